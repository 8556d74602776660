package sumdbtest_test

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

const dbName = "sum.mod.test"

// startUpstream starts the fixture upstream with the standard modules and a
// checksum database mounted under it. answerSupported stands in for modgate,
// which answers /sumdb/<name>/supported itself.
func startUpstream(t *testing.T, answerSupported bool) (*proxytest.Server, *sumdbtest.DB) {
	t.Helper()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, dbName)
	upstream.AnswerSumDBSupported(dbName, answerSupported)
	return upstream, db
}

// goEnv is the go command's environment for verifying through the fixture:
// the database is reachable only under GOPROXY (sum.mod.test does not resolve).
func goEnv(upstream *proxytest.Server, db *sumdbtest.DB) []string {
	return []string{"GOPROXY=" + upstream.URL, "GOSUMDB=" + db.Key()}
}

type downloaded struct {
	Path, Version, Sum, GoModSum, Error string
}

func decodeDownloads(t *testing.T, stdout string) map[string]downloaded {
	t.Helper()
	got := make(map[string]downloaded)
	dec := json.NewDecoder(strings.NewReader(stdout))
	for {
		var d downloaded
		err := dec.Decode(&d)
		if errors.Is(err, io.EOF) {
			return got
		}
		if err != nil {
			t.Fatalf("decoding go mod download -json output: %v", err)
		}
		got[d.Path+"@"+d.Version] = d
	}
}

// TestGoCommandVerifies has the real go command verify every standard module
// against the database, reached through the upstream's /sumdb/ paths.
func TestGoCommandVerifies(t *testing.T) {
	t.Parallel()
	upstream, db := startUpstream(t, true)
	g := gotest.New(t, goEnv(upstream, db)...)

	args := []string{"mod", "download", "-json"}
	for _, m := range proxytest.StandardModules() {
		args = append(args, m.String())
	}
	stdout, _, err := g.Run("", args...)
	if err != nil {
		t.Fatalf("go mod download: %v", err)
	}
	got := decodeDownloads(t, stdout)
	for _, m := range proxytest.StandardModules() {
		t.Run(m.String(), func(t *testing.T) {
			d := got[m.String()]
			if d.Error != "" {
				t.Fatalf("go mod download: %s", d.Error)
			}
			sum, _ := proxytest.DirHash(m)
			gsum, _ := proxytest.GoModHash(m)
			if d.Sum != sum || d.GoModSum != gsum {
				t.Errorf("go command: Sum %s GoModSum %s; fixture: %s %s", d.Sum, d.GoModSum, sum, gsum)
			}
			if !slices.Contains(db.LookedUp(), m.String()) {
				t.Errorf("the go command did not look %s up", m)
			}
		})
	}
	if upstream.Hits("/sumdb/"+dbName+"/supported") == 0 {
		t.Error("the go command never asked the upstream for /sumdb/.../supported")
	}
	var tiles int
	for _, p := range upstream.Paths() {
		if strings.HasPrefix(p, "/sumdb/"+dbName+"/tile/") {
			tiles++
		}
	}
	if tiles == 0 {
		t.Error("the go command fetched no tiles through the upstream")
	}
}

// TestGoSum checks that `go get` writes exactly the fixture's hashes to go.sum.
func TestGoSum(t *testing.T) {
	t.Parallel()
	upstream, db := startUpstream(t, true)
	g := gotest.New(t, goEnv(upstream, db)...)
	dir := g.MainModule("example.com/main")
	if _, _, err := g.Run(dir, "get", proxytest.HelloPath+"@v1.1.0", proxytest.UpperPath+"@v1.0.0"); err != nil {
		t.Fatalf("go get: %v", err)
	}
	gosum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	var want []string
	for _, mv := range [][2]string{{proxytest.HelloPath, "v1.1.0"}, {proxytest.UpperPath, "v1.0.0"}} {
		zs, gs := upstream.Sums(t, mv[0], mv[1])
		want = append(want, mv[0]+" "+mv[1]+" "+zs, mv[0]+" "+mv[1]+"/go.mod "+gs)
	}
	got := strings.Split(strings.TrimSpace(string(gosum)), "\n")
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("go.sum =\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestTamperHash proves the database can lie convincingly: the go command
// must refuse the real zip.
func TestTamperHash(t *testing.T) {
	t.Parallel()
	upstream, db := startUpstream(t, true)
	if err := db.TamperHash(proxytest.HelloPath, "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	if err := db.TamperHash("mod.test/nope", "v1.0.0"); err == nil {
		t.Error("TamperHash of an unknown module succeeded")
	}
	g := gotest.New(t, goEnv(upstream, db)...)

	_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0")
	if err == nil {
		t.Fatal("go mod download of a module with a tampered checksum succeeded")
	}
	for _, want := range []string{"checksum mismatch", "SECURITY ERROR"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q:\n%s", want, stderr)
		}
	}
	// Other versions still verify: the log stayed consistent.
	if _, _, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0"); err != nil {
		t.Errorf("untampered version failed: %v", err)
	}
}

// TestLookupCounting shows Lookups both ways: a path excluded by GONOSUMDB is
// never looked up, the others are.
func TestLookupCounting(t *testing.T) {
	t.Parallel()
	upstream, db := startUpstream(t, true)
	g := gotest.New(t, append(goEnv(upstream, db), "GONOSUMDB="+proxytest.UpperPath)...)
	if _, _, err := g.Run("", "mod", "download", proxytest.UpperPath+"@v1.0.0", proxytest.HelloPath+"@v1.0.0"); err != nil {
		t.Fatalf("go mod download: %v", err)
	}
	if n := db.Lookups(proxytest.UpperPath); n != 0 {
		t.Errorf("Lookups(%s) = %d, want 0 (GONOSUMDB)", proxytest.UpperPath, n)
	}
	if n := db.Lookups(proxytest.HelloPath); n != 1 {
		t.Errorf("Lookups(%s) = %d, want 1", proxytest.HelloPath, n)
	}
	for _, p := range upstream.Paths() {
		if strings.Contains(p, "!upper") && strings.HasPrefix(p, "/sumdb/") {
			t.Errorf("the upstream saw a checksum request for the excluded path: %s", p)
		}
	}
}

// TestProtocol checks the database's HTTP answers under the upstream directly.
func TestProtocol(t *testing.T) {
	t.Parallel()
	upstream, db := startUpstream(t, false)
	base := upstream.URL + "/sumdb/" + dbName

	verifier, err := note.NewVerifier(db.Key())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name       string
		path       string
		wantStatus int
		check      func(t *testing.T, body []byte)
	}{
		{"supported/not-answered-by-default", "/supported", http.StatusNotFound, nil},
		{"latest/signed", "/latest", http.StatusOK, func(t *testing.T, body []byte) {
			n, err := note.Open(body, note.VerifierList(verifier))
			if err != nil {
				t.Fatalf("latest does not verify with Key: %v", err)
			}
			tree, err := tlog.ParseTree([]byte(n.Text))
			if err != nil {
				t.Fatal(err)
			}
			if tree.N != int64(len(proxytest.StandardModules())) {
				t.Errorf("tree size %d, want one record per module version (%d)", tree.N, len(proxytest.StandardModules()))
			}
		}},
		{"lookup/record", "/lookup/mod.test/!upper/!case@v1.0.0", http.StatusOK, func(t *testing.T, body []byte) {
			zs, gs := upstream.Sums(t, proxytest.UpperPath, "v1.0.0")
			want := proxytest.UpperPath + " v1.0.0 " + zs + "\n" + proxytest.UpperPath + " v1.0.0/go.mod " + gs + "\n"
			// The body is the record id, the record, then the signed tree.
			if _, rec, _ := strings.Cut(string(body), "\n"); !strings.HasPrefix(rec, want) {
				t.Errorf("lookup body:\n%s\nwant record:\n%s", body, want)
			}
		}},
		{"lookup/unknown", "/lookup/private.corp/secret@v1.0.0", http.StatusNotFound, func(t *testing.T, _ []byte) {
			if n := db.Lookups("private.corp/secret"); n != 1 {
				t.Errorf("Lookups(private.corp/secret) = %d, want 1: failed lookups count too", n)
			}
		}},
		{"tile", "/tile/8/0/000.p/1", http.StatusOK, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(base + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d, want %d; body %q", resp.StatusCode, tt.wantStatus, body)
			}
			if tt.check != nil {
				tt.check(t, body)
			}
		})
	}
}

func TestKeyDeterministic(t *testing.T) {
	t.Parallel()
	a := sumdbtest.New(t, dbName, nil)
	b := sumdbtest.New(t, dbName, nil)
	c := sumdbtest.New(t, "other.mod.test", nil)
	if a.Key() != b.Key() {
		t.Errorf("same name, different keys: %s, %s", a.Key(), b.Key())
	}
	if a.Key() == c.Key() || !strings.HasPrefix(c.Key(), "other.mod.test+") {
		t.Errorf("keys: %s, %s", a.Key(), c.Key())
	}
}

// TestThroughMiddleProxy is the shape of modgate's end-to-end tests: the go
// command talks to a proxy in the middle that answers /sumdb/<name>/supported
// itself and forwards everything else to the fixture upstream, which does not
// answer supported.
func TestThroughMiddleProxy(t *testing.T) {
	t.Parallel()
	upstream, db := startUpstream(t, false)
	target, err := url.Parse(upstream.URL)
	if err != nil {
		t.Fatal(err)
	}
	forward := httputil.NewSingleHostReverseProxy(target)
	middle := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/sumdb/"+dbName+"/supported" {
			return // 200, empty
		}
		forward.ServeHTTP(w, r)
	}))
	t.Cleanup(middle.Close)

	g := gotest.New(t, "GOPROXY="+middle.URL, "GOSUMDB="+db.Key())
	stdout, _, err := g.Run("", "mod", "download", "-json", proxytest.HelloV2Path+"@v2.1.0")
	if err != nil {
		t.Fatalf("go mod download: %v", err)
	}
	d := decodeDownloads(t, stdout)[proxytest.HelloV2Path+"@v2.1.0"]
	if zs, _ := upstream.Sums(t, proxytest.HelloV2Path, "v2.1.0"); d.Sum != zs {
		t.Errorf("Sum = %q, want %q", d.Sum, zs)
	}
	if n := db.Lookups(proxytest.HelloV2Path); n != 1 {
		t.Errorf("Lookups = %d, want 1", n)
	}
	if n := upstream.Hits("/sumdb/" + dbName + "/supported"); n != 0 {
		t.Errorf("upstream asked for supported %d times, want 0 (the middle proxy answers it)", n)
	}
}
