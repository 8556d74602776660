package vulndb

import (
	"archive/zip"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/vulntest"
)

var reports = []vulntest.Report{
	{ID: "GO-2024-0001", Aliases: []string{"CVE-2024-1111"}, Summary: "Bad parsing in m", Module: "m.test/m", Ranges: [][2]string{{"0", "1.2.4"}}},
	// Introduced in 1.5.0, fixed in 1.5.2, reintroduced in 2.0.0, fixed in 2.0.1.
	{ID: "GO-2024-0002", Summary: "Two ranges", Module: "m.test/m", Ranges: [][2]string{{"1.5.0", "1.5.2"}, {"2.0.0", "2.0.1"}}},
	{ID: "GO-2024-0003", Summary: "Never fixed", Module: "m.test/other", Ranges: [][2]string{{"0.3.0", ""}}},
}

func osvs(rs ...vulntest.Report) [][]byte {
	var out [][]byte
	for _, r := range rs {
		out = append(out, r.OSV())
	}
	return out
}

func TestAffecting(t *testing.T) {
	db, err := Build(osvs(reports...), "test")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		module, version string
		want            string // "id:fixed,..."
	}{
		{"m.test/m", "v1.0.0", "GO-2024-0001:v1.2.4"},
		{"m.test/m", "v1.2.3", "GO-2024-0001:v1.2.4"},
		{"m.test/m", "v1.2.4", ""},
		{"m.test/m", "v1.5.0", "GO-2024-0002:v1.5.2"},
		{"m.test/m", "v1.5.1-rc.1", "GO-2024-0002:v1.5.2"},
		{"m.test/m", "v1.5.2", ""},
		{"m.test/m", "v2.0.0", "GO-2024-0002:v2.0.1"},
		{"m.test/m", "v2.0.1", ""},
		{"m.test/other", "v0.2.9", ""},
		{"m.test/other", "v9.0.0", "GO-2024-0003:"},
		{"m.test/none", "v1.0.0", ""},
		{"m.test/m", "not-a-version", ""},
	}
	for _, tt := range tests {
		var got []string
		for _, a := range db.Affecting(tt.module, tt.version) {
			got = append(got, a.ID+":"+a.Fixed)
		}
		if g := strings.Join(got, ","); g != tt.want {
			t.Errorf("Affecting(%s@%s) = %q, want %q", tt.module, tt.version, g, tt.want)
		}
	}
	adv := db.Affecting("m.test/m", "v1.0.0")[0]
	if adv.Summary != "Bad parsing in m" || len(adv.Aliases) != 1 || adv.Aliases[0] != "CVE-2024-1111" {
		t.Errorf("advisory = %+v", adv)
	}
}

func gunzip(t *testing.T, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// The files are the layout golang.org/x/vuln's client reads, each with a gzip
// variant holding the same bytes.
func TestLayout(t *testing.T) {
	db, err := Build(osvs(reports...), "test")
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"index/db.json", "index/modules.json", "index/vulns.json", "ID/GO-2024-0001.json"} {
		plain, ok := db.File(name)
		gz, okgz := db.File(name + ".gz")
		if !ok || !okgz {
			t.Fatalf("%s missing (plain %v, gz %v)", name, ok, okgz)
		}
		if !bytes.Equal(gunzip(t, gz), plain) {
			t.Errorf("%s.gz does not hold %s", name, name)
		}
	}
	var modules []struct {
		Path  string
		Vulns []struct{ ID, Fixed string }
	}
	b, _ := db.File("index/modules.json")
	if err := json.Unmarshal(b, &modules); err != nil {
		t.Fatal(err)
	}
	if len(modules) != 2 || modules[0].Path != "m.test/m" || len(modules[0].Vulns) != 2 ||
		modules[0].Vulns[0].Fixed != "1.2.4" || modules[0].Vulns[1].Fixed != "2.0.1" || modules[1].Vulns[0].Fixed != "" {
		t.Errorf("modules.json = %s", b)
	}
	var meta struct{ Modified time.Time }
	b, _ = db.File("index/db.json")
	if err := json.Unmarshal(b, &meta); err != nil || !meta.Modified.Equal(time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)) {
		t.Errorf("db.json = %s (%v)", b, err)
	}
	if _, ok := db.File("ID/GO-2024-9999.json"); ok {
		t.Error("a report that does not exist was found")
	}
}

func TestBuildRejects(t *testing.T) {
	for name, in := range map[string][][]byte{
		"fail/not-json":     {[]byte("{")},
		"fail/path-id":      {[]byte(`{"id":"../../etc/passwd","affected":[]}`)},
		"fail/duplicate-id": osvs(reports[0], reports[0]),
	} {
		if _, err := Build(in, "test"); err == nil {
			t.Errorf("%s: Build accepted it", name)
		}
	}
}

func moduleZip(t *testing.T, mod, version string, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, _ := zw.Create(mod + "@" + version + "/" + name)
		io.WriteString(w, body)
	}
	zw.Close()
	return buf.Bytes()
}

// The module source reads data/osv from the zip of @latest, and does not fetch
// the zip again while @latest is unchanged.
func TestModuleSource(t *testing.T) {
	latest := "v0.0.0-20240601000000-aaaaaaaaaaaa"
	z := moduleZip(t, DefaultModule, latest, vulntest.ModuleFiles(DefaultModule, reports...))
	var zips atomic.Int32
	get := func(_ context.Context, p string) (io.ReadCloser, error) {
		switch p {
		case "golang.org/x/vulndb/@latest":
			return io.NopCloser(strings.NewReader(`{"Version":"` + latest + `"}`)), nil
		case "golang.org/x/vulndb/@v/" + latest + ".zip":
			zips.Add(1)
			return io.NopCloser(bytes.NewReader(z)), nil
		}
		return nil, derrors.New(derrors.NotFound, "no %s", p)
	}
	svc := New(Config{Source: &ModuleSource{Get: get, ScratchDir: t.TempDir()}, Dir: t.TempDir()})
	for range 2 {
		if err := svc.Refresh(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	if n := zips.Load(); n != 1 {
		t.Errorf("zip fetched %d times, want 1", n)
	}
	if got := svc.Affecting("m.test/m", "v1.2.3"); len(got) != 1 || got[0].ID != "GO-2024-0001" {
		t.Errorf("Affecting = %+v", got)
	}
	if db := svc.DB(); db.Origin != DefaultModule+"@"+latest || db.Len() != 3 {
		t.Errorf("origin %q, %d reports", db.Origin, db.Len())
	}
}

// The URL source copies an upstream database and fetches only changed reports
// again; while the upstream fails, the last good copy is served (stale-if-error)
// until StaleIfError runs out; a restart serves the kept snapshot.
func TestURLSourceStaleIfError(t *testing.T) {
	up, err := Build(osvs(reports...), "upstream")
	if err != nil {
		t.Fatal(err)
	}
	var fetches, failing atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() == 1 {
			http.Error(w, "down", http.StatusBadGateway)
			return
		}
		name := strings.TrimPrefix(r.URL.Path, "/db/")
		b, ok := up.File(name)
		if !ok {
			http.NotFound(w, r)
			return
		}
		if strings.HasPrefix(name, "ID/") {
			fetches.Add(1)
		}
		w.Write(b)
	}))
	defer srv.Close()
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	cfg := Config{
		Source:  &URLSource{Get: HTTPGetter(srv.Client(), srv.URL+"/db"), Origin: srv.URL + "/db"},
		Refresh: time.Hour, StaleIfError: 24 * time.Hour, Dir: dir,
		Now: func() time.Time { return now },
	}
	svc := New(cfg)
	if _, _, err := svc.Open("index/db.json"); !errors.Is(err, derrors.Unavailable) {
		t.Fatalf("before loading: %v, want Unavailable", err)
	}
	if err := svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := fetches.Load(); n != 3 {
		t.Errorf("first load fetched %d reports, want 3", n)
	}
	// A changed report: only it is fetched again.
	changed := reports[2]
	changed.Modified = time.Date(2024, 7, 1, 0, 0, 0, 0, time.UTC)
	changed.Ranges = [][2]string{{"0.3.0", "0.4.0"}}
	up, _ = Build(osvs(reports[0], reports[1], changed), "upstream")
	if err := svc.Refresh(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := fetches.Load(); n != 4 {
		t.Errorf("after one change %d report fetches in all, want 4", n)
	}
	if got := svc.Affecting("m.test/other", "v0.4.0"); len(got) != 0 {
		t.Errorf("the changed report was not taken: %+v", got)
	}

	failing.Store(1)
	now = now.Add(2 * time.Hour)
	if err := svc.Refresh(context.Background()); err == nil {
		t.Fatal("refresh against a failing upstream succeeded")
	}
	if _, _, err := svc.Open("index/modules.json.gz"); err != nil {
		t.Errorf("stale copy not served while the upstream fails: %v", err)
	}
	if detail, err := svc.Status(); err != nil || !strings.Contains(detail, "last refresh failed") {
		t.Errorf("Status = %q, %v", detail, err)
	}
	now = now.Add(48 * time.Hour)
	if _, _, err := svc.Open("index/modules.json.gz"); !errors.Is(err, derrors.Unavailable) {
		t.Errorf("copy beyond stale_if_error served: %v", err)
	}

	// A restart while the upstream is down serves the snapshot.
	cfg.Now = time.Now
	cfg.StaleIfError = 0
	again := New(cfg)
	if got := again.Affecting("m.test/m", "v1.0.0"); len(got) != 1 {
		t.Errorf("snapshot after restart: %+v", got)
	}
}
