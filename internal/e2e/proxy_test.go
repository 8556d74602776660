package e2e

import (
	"bytes"
	"encoding/json"
	"github.com/modgate/modgate/internal/app"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

const testSumDB = "sum.mod.test"

// startProxy runs modgate in-process over the given upstream list.
func startProxy(t *testing.T, upstreams string, mutate ...func(*config.Config)) (*httptest.Server, string) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = upstreams
	cfg.Auth.Anonymous = true
	cfg.Upstream.RetryBackoff = config.Duration(1e6) // 1ms: tests inject failures on purpose
	cfg.SumDB.Names = []string{testSumDB}
	// Most fixtures mount no checksum database; verify_test.go opts in.
	cfg.SumDB.Verify = false
	for _, m := range mutate {
		m(&cfg)
	}
	s, err := app.NewServer(app.ServerOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, cfg.Cache.Dir
}

type downloadJSON struct {
	Path, Version, Sum, GoModSum, Error string
}

func parseDownloads(t *testing.T, out string) []downloadJSON {
	t.Helper()
	var res []downloadJSON
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var d downloadJSON
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("decoding go mod download -json: %v\n%s", err, out)
		}
		res = append(res, d)
	}
	return res
}

// The go command, with a fresh module cache and the checksum database reachable
// only through modgate, downloads every shape of module and gets exactly the hashes
// computed from the fixtures.
func TestGoCommandThroughModgate(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	mg, _ := startProxy(t, upstream.URL)
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())

	var args []string
	for _, m := range upstream.Modules() {
		args = append(args, m.Path+"@"+m.Version)
	}
	stdout, stderr, err := g.Run("", append([]string{"mod", "download", "-json"}, args...)...)
	if err != nil {
		t.Fatalf("go mod download: %v\n%s\n%s", err, stderr, stdout)
	}
	got := parseDownloads(t, stdout)
	if len(got) != len(args) {
		t.Fatalf("downloaded %d modules, want %d", len(got), len(args))
	}
	for _, d := range got {
		if d.Error != "" {
			t.Errorf("%s@%s: %s", d.Path, d.Version, d.Error)
			continue
		}
		zipSum, modSum := upstream.Sums(t, d.Path, d.Version)
		if d.Sum != zipSum || d.GoModSum != modSum {
			t.Errorf("%s@%s: Sum %s GoModSum %s, want %s %s", d.Path, d.Version, d.Sum, d.GoModSum, zipSum, modSum)
		}
	}
	for _, p := range []string{proxytest.HelloPath, proxytest.UpperPath, proxytest.LegacyPath} {
		if db.Lookups(p) == 0 {
			t.Errorf("%s was not verified against the checksum database", p)
		}
	}

	t.Run("list-versions", func(t *testing.T) {
		tests := []struct{ path, want string }{
			{proxytest.RetractPath, proxytest.RetractPath + " v1.0.0 v1.2.0"}, // v1.1.0 is retracted
			{proxytest.HelloPath, proxytest.HelloPath + " v1.0.0 v1.1.0"},
			{proxytest.HelloV2Path, proxytest.HelloV2Path + " v2.0.0 v2.1.0"},
			{proxytest.LegacyPath, proxytest.LegacyPath + " v1.0.0 v3.0.0+incompatible"},
			{proxytest.UpperPath, proxytest.UpperPath + " v1.0.0"},
		}
		for _, tt := range tests {
			out, stderr, err := g.Run("", "list", "-m", "-versions", tt.path)
			if err != nil {
				t.Fatalf("go list -m -versions %s: %v\n%s", tt.path, err, stderr)
			}
			if strings.TrimSpace(out) != tt.want {
				t.Errorf("go list -m -versions %s = %q, want %q", tt.path, strings.TrimSpace(out), tt.want)
			}
		}
	})

	t.Run("get-latest-and-exact", func(t *testing.T) {
		dir := g.MainModule("example.com/app")
		os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"mod.test/hello\"\n\nfunc main() { println(hello.Hello()) }\n"), 0o644)
		if _, stderr, err := g.Run(dir, "get", proxytest.HelloPath+"@latest"); err != nil {
			t.Fatalf("go get @latest: %v\n%s", err, stderr)
		}
		assertRequires(t, dir, proxytest.HelloPath+" v1.1.0")
		if _, stderr, err := g.Run(dir, "get", proxytest.HelloPath+"@v1.0.0"); err != nil {
			t.Fatalf("go get @v1.0.0: %v\n%s", err, stderr)
		}
		assertRequires(t, dir, proxytest.HelloPath+" v1.0.0")
		if _, stderr, err := g.Run(dir, "get", proxytest.SelfRetractPath+"@latest"); err != nil {
			t.Fatalf("go get selfretract@latest: %v\n%s", err, stderr)
		}
		assertRequires(t, dir, proxytest.SelfRetractPath+" v1.0.0")
		if out, stderr, err := g.Run(dir, "run", "."); err != nil || !strings.Contains(stderr+out, "hello") {
			t.Fatalf("go run: %v\n%s%s", err, out, stderr)
		}
		sum, _ := os.ReadFile(filepath.Join(dir, "go.sum"))
		zipSum, _ := upstream.Sums(t, proxytest.HelloPath, "v1.0.0")
		if !strings.Contains(string(sum), proxytest.HelloPath+" v1.0.0 "+zipSum) {
			t.Errorf("go.sum lacks %s v1.0.0 %s:\n%s", proxytest.HelloPath, zipSum, sum)
		}
	})
}

// downloadOne runs `go mod download -json path@version` and checks that the go
// command got the zip hash of the upstream's fixture.
func downloadOne(t *testing.T, g *gotest.Go, upstream *proxytest.Server, path, version string) {
	t.Helper()
	stdout, stderr, err := g.Run("", "mod", "download", "-json", path+"@"+version)
	if err != nil {
		t.Fatalf("go mod download %s@%s: %v\n%s\n%s", path, version, err, stderr, stdout)
	}
	zipSum, _ := upstream.Sums(t, path, version)
	if d := parseDownloads(t, stdout); len(d) != 1 || d[0].Sum != zipSum {
		t.Errorf("go mod download %s@%s = %+v, want Sum %s", path, version, d, zipSum)
	}
}

func assertRequires(t *testing.T, dir, want string) {
	t.Helper()
	gomod, _ := os.ReadFile(filepath.Join(dir, "go.mod"))
	if !strings.Contains(string(gomod), want) {
		t.Errorf("go.mod does not require %q:\n%s", want, gomod)
	}
}

// A tampered checksum database record makes the go command refuse the module, even
// though modgate serves the genuine bytes.
func TestChecksumMismatchThroughModgate(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	if err := db.TamperHash(proxytest.HelloPath, "v1.1.0"); err != nil {
		t.Fatal(err)
	}
	mg, _ := startProxy(t, upstream.URL)
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0")
	if err == nil || !strings.Contains(stderr, "SECURITY ERROR") {
		t.Fatalf("tampered hash accepted: err=%v\n%s", err, stderr)
	}
	// The untampered version still verifies.
	if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0"); err != nil {
		t.Fatalf("genuine version refused: %v\n%s", err, stderr)
	}
}

func TestFallbackThroughTheChain(t *testing.T) {
	hello := []proxytest.Module{}
	for _, m := range proxytest.StandardModules() {
		if m.Path == proxytest.HelloPath {
			hello = append(hello, m)
		}
	}
	tests := []struct {
		name       string
		firstFault proxytest.Fault
		sep        string
		wantErr    string
	}{
		{name: "ok/first-404-second-serves", firstFault: proxytest.Fault{Status: 404}, sep: ","},
		{name: "ok/first-410-second-serves", firstFault: proxytest.Fault{Status: 410}, sep: ","},
		{name: "fail/first-500-after-comma", firstFault: proxytest.Fault{Status: 500}, sep: ",", wantErr: "upstream mirror answered 500 Internal Server Error"},
		{name: "ok/first-500-after-pipe", firstFault: proxytest.Fault{Status: 500}, sep: "|"},
		{name: "ok/first-reset-after-pipe", firstFault: proxytest.Fault{Reset: true}, sep: "|"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			first := proxytest.NewServer(t, hello...)
			first.SetGlobalFault(tt.firstFault)
			second := proxytest.NewServer(t, hello...)
			mg, _ := startProxy(t, first.URL+tt.sep+second.URL)
			g := gotest.New(t, "GOPROXY="+mg.URL, "GONOSUMDB=mod.test")
			stdout, stderr, err := g.Run("", "mod", "download", "-json", proxytest.HelloPath+"@v1.1.0")
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(stdout+stderr, tt.wantErr) {
					t.Fatalf("err=%v stderr=%s; want failure printing %q", err, stderr, tt.wantErr)
				}
				if n := len(second.Paths()); n != 0 {
					t.Errorf("second mirror asked %d times after a 500 behind ','", n)
				}
				return
			}
			if err != nil {
				t.Fatalf("go mod download: %v\n%s", err, stderr)
			}
			if second.Hits(proxytest.ZipPath(proxytest.HelloPath, "v1.1.0")) != 1 {
				t.Errorf("second mirror did not serve the zip: %v", second.Paths())
			}
		})
	}
}

// 100 concurrent requests for one uncached zip cause exactly one upstream fetch
// and all receive identical bytes.
func TestConcurrentColdZipOneFetch(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	zipPath := proxytest.ZipPath(proxytest.LargePath, "v1.0.0")
	gate := upstream.Gate(zipPath, 64<<10)
	mg, _ := startProxy(t, upstream.URL)
	want, err := proxytest.Zip(moduleOf(t, upstream, proxytest.LargePath, "v1.0.0"))
	if err != nil {
		t.Fatal(err)
	}

	const n = 100
	var wg sync.WaitGroup
	bodies := make([][]byte, n)
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(mg.URL + zipPath)
			if err != nil {
				errs[i] = err
				return
			}
			defer resp.Body.Close()
			bodies[i], errs[i] = io.ReadAll(resp.Body)
		}()
	}
	<-gate.Held()
	gate.Release()
	wg.Wait()
	for i := range n {
		if errs[i] != nil {
			t.Fatalf("request %d: %v", i, errs[i])
		}
		if !bytes.Equal(bodies[i], want) {
			t.Fatalf("request %d: %d bytes, not the zip (%d bytes)", i, len(bodies[i]), len(want))
		}
	}
	if hits := upstream.Hits(zipPath); hits != 1 {
		t.Errorf("upstream fetched the zip %d times, want 1", hits)
	}
}

// With every upstream gone, a populated cache still serves lists (stale) and
// immutable objects, so the go command with a fresh module cache succeeds.
func TestUpstreamDownServesFromCache(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	mg, _ := startProxy(t, upstream.URL, func(c *config.Config) {
		c.Cache.ListTTL = 0 // every list request revalidates, so the stale path is exercised
		c.Upstream.Retries = 0
	})
	env := []string{"GOPROXY=" + mg.URL, "GONOSUMDB=mod.test"}
	warm := gotest.New(t, env...)
	dir := warm.MainModule("example.com/app")
	if _, stderr, err := warm.Run(dir, "get", proxytest.HelloPath+"@latest"); err != nil {
		t.Fatalf("warming: %v\n%s", err, stderr)
	}
	upstream.SetGlobalFault(proxytest.Fault{Status: 503})

	cold := gotest.New(t, env...)
	dir = cold.MainModule("example.com/app2")
	if _, stderr, err := cold.Run(dir, "get", proxytest.HelloPath+"@latest"); err != nil {
		t.Fatalf("with upstream down: %v\n%s", err, stderr)
	}
	assertRequires(t, dir, proxytest.HelloPath+" v1.1.0")
	if out, _, _ := cold.Run("", "list", "-m", "-versions", proxytest.HelloPath); strings.TrimSpace(out) != proxytest.HelloPath+" v1.0.0 v1.1.0" {
		t.Errorf("stale list: %q", out)
	}
}

func moduleOf(t *testing.T, s *proxytest.Server, path, version string) proxytest.Module {
	t.Helper()
	for _, m := range s.Modules() {
		if m.Path == path && m.Version == version {
			return m
		}
	}
	t.Fatalf("no fixture %s@%s", path, version)
	return proxytest.Module{}
}

// Private paths never leave the company: not to a mirror, not to the checksum
// database, even when a developer forgets GONOSUMDB.
func TestPrivatePathsNeverLeak(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	mg, _ := startProxy(t, upstream.URL, func(c *config.Config) { c.Private.Patterns = "mod.test/hello,mod.test/Upper" })
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	for _, mod := range []string{proxytest.HelloPath + "@v1.0.0", proxytest.HelloV2Path + "@v2.0.0", proxytest.UpperPath + "@v1.0.0"} {
		_, stderr, err := g.Run("", "mod", "download", mod)
		if err == nil || !strings.Contains(stderr, "is a private module path") {
			t.Errorf("%s: err=%v, want the private-path refusal:\n%s", mod, err, stderr)
		}
	}
	// A direct lookup for a private path is refused locally.
	resp, err := http.Get(mg.URL + "/sumdb/" + testSumDB + "/lookup/mod.test/hello@v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 404 {
		t.Errorf("private sumdb lookup: %d, want 404", resp.StatusCode)
	}
	// Public modules still work.
	if _, stderr, err := g.Run("", "mod", "download", proxytest.LegacyPath+"@v1.0.0"); err != nil {
		t.Fatalf("public module: %v\n%s", err, stderr)
	}
	for _, p := range upstream.Paths() {
		if strings.Contains(p, "hello") || strings.Contains(strings.ToLower(p), "upper") {
			t.Errorf("upstream was asked for private path %s", p)
		}
	}
	for _, p := range db.LookedUp() {
		if strings.Contains(p, "hello") || strings.Contains(strings.ToLower(p), "upper") {
			t.Errorf("checksum database was asked about private path %s", p)
		}
	}
}
