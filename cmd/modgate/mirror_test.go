package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"github.com/modgate/modgate/internal/app"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

func TestSyncAndBundleHelp(t *testing.T) {
	t.Parallel()
	for _, args := range [][]string{{"--help"}, {"export", "--help"}, {"import", "--help"}} {
		var out, errOut bytes.Buffer
		err := runBundle(context.Background(), args, &out, &errOut)
		if !errors.Is(err, flag.ErrHelp) || !strings.Contains(out.String()+errOut.String(), "modgate bundle export --out FILE") {
			t.Errorf("bundle %v: err=%v out=%q", args, err, out.String()+errOut.String())
		}
	}
	var out, errOut bytes.Buffer
	if err := runSync(context.Background(), []string{"--help"}, &out, &errOut); !errors.Is(err, flag.ErrHelp) || !strings.Contains(errOut.String(), "--go-sum") {
		t.Errorf("sync --help: err=%v out=%q", err, errOut.String())
	}
}

// The CLI as an operator runs it: sync from a go.sum (JSON summary, not a
// terminal), a go.sum with a wrong hash fails loudly, then export and import.
func TestSyncAndBundleCommands(t *testing.T) {
	t.Parallel()
	up := proxytest.NewServer(t, proxytest.StandardModules()...)
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = up.URL
	cfg.Auth.Anonymous = true
	cfg.SumDB.Names = nil
	cfg.SumDB.Verify = false // the fixtures are in no checksum database modgate can verify against
	s, err := app.NewServer(app.ServerOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	mg := httptest.NewServer(s.Handler())
	t.Cleanup(mg.Close)

	zipSum, modSum := up.Sums(t, proxytest.HelloPath, "v1.1.0")
	dir := t.TempDir()
	good := filepath.Join(dir, "go.sum")
	os.WriteFile(good, []byte(proxytest.HelloPath+" v1.1.0 "+zipSum+"\n"+proxytest.HelloPath+" v1.1.0/go.mod "+modSum+"\n"), 0o644)
	bad := filepath.Join(dir, "bad.sum")
	os.WriteFile(bad, []byte(proxytest.UpperPath+" v1.0.0 "+zipSum+"\n"), 0o644)

	var out, errOut bytes.Buffer
	if err := runSync(context.Background(), []string{"--proxy", mg.URL, "--netrc", filepath.Join(dir, "none"), "--go-sum", good}, &out, &errOut); err != nil {
		t.Fatalf("sync: %v\n%s%s", err, out.String(), errOut.String())
	}
	var sum struct{ Modules, Objects, Failed int }
	if err := json.Unmarshal(out.Bytes(), &sum); err != nil || sum.Modules != 1 || sum.Objects != 3 || sum.Failed != 0 {
		t.Errorf("summary %q: %+v %v", out.String(), sum, err)
	}
	out.Reset()
	err = runSync(context.Background(), []string{"--proxy", mg.URL, "--netrc", filepath.Join(dir, "none"), "--go-sum", bad}, &out, &errOut)
	if err == nil || !strings.Contains(out.String(), "checksum mismatch") {
		t.Errorf("wrong go.sum hash: err=%v out=%s", err, out.String())
	}

	bundle := filepath.Join(dir, "b.tar.gz")
	out.Reset()
	if err := runBundle(context.Background(), []string{"export", "--cache-dir", cfg.Cache.Dir, "--out", bundle, "--modules", proxytest.HelloPath}, &out, &errOut); err != nil {
		t.Fatalf("export: %v %s", err, errOut.String())
	}
	if !strings.Contains(out.String(), `"action":"bundle-export"`) || !strings.Contains(out.String(), `"ok":true`) {
		t.Errorf("export line: %s", out.String())
	}
	out.Reset()
	inside := t.TempDir()
	if err := runBundle(context.Background(), []string{"import", "--cache-dir", inside, bundle}, &out, &errOut); err != nil {
		t.Fatalf("import: %v %s", err, errOut.String())
	}
	var line struct {
		Action    string
		OK        bool
		Installed int
	}
	if err := json.Unmarshal(out.Bytes(), &line); err != nil || line.Action != "bundle-import" || !line.OK || line.Installed != 3 {
		t.Errorf("import line %q: %+v", out.String(), line)
	}
}

// With a database configured, export and import are on the audit trail.
func TestBundleAudited(t *testing.T) {
	t.Parallel()
	pool, dbURL := pgtest.NewPool(t)
	dir := t.TempDir()
	cacheDir := filepath.Join(dir, "cache")
	os.MkdirAll(filepath.Join(cacheDir, "mod/mod.test/x/@v"), 0o755)
	os.WriteFile(filepath.Join(cacheDir, "mod/mod.test/x/@v/list"), []byte("v1.0.0\n"), 0o644)
	cfgFile := filepath.Join(dir, "modgate.yaml")
	os.WriteFile(cfgFile, []byte("cache:\n  dir: "+cacheDir+"\ndatabase:\n  url: "+dbURL+"\n  migrate: false\naudit:\n  spool_dir: "+filepath.Join(dir, "spool")+"\n"), 0o644)
	bundle := filepath.Join(dir, "b.tar.zst")
	var out, errOut bytes.Buffer
	if err := runBundle(context.Background(), []string{"export", "--config", cfgFile, "--all", "--out", bundle}, &out, &errOut); err != nil {
		t.Fatalf("export: %v %s", err, errOut.String())
	}
	if err := runBundle(context.Background(), []string{"import", "--config", cfgFile, "--cache-dir", t.TempDir(), bundle}, &out, &errOut); err != nil {
		t.Fatalf("import: %v %s", err, errOut.String())
	}
	if errOut.Len() > 0 {
		t.Errorf("stderr: %s", errOut.String())
	}
	rows, _, err := audit.Query(context.Background(), pool, audit.Filter{Actions: []audit.Action{"bundle-export", "bundle-import"}})
	if err != nil {
		t.Fatal(err)
	}
	got := map[audit.Action]bool{}
	for _, r := range rows {
		got[r.Action] = r.Outcome == audit.OutcomeServed && r.Source == bundle
	}
	if !got["bundle-export"] || !got["bundle-import"] {
		t.Errorf("audit rows %+v: want a served bundle-export and bundle-import naming %s", rows, bundle)
	}
}
