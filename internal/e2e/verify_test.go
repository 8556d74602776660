package e2e

import (
	"github.com/modgate/modgate/internal/app"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// memAuditor keeps audit events in memory.
type memAuditor struct {
	mu     sync.Mutex
	events []audit.Event
}

func (a *memAuditor) Record(ev audit.Event) error {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.events = append(a.events, ev)
	return nil
}

func (a *memAuditor) Healthy() error { return nil }

func (a *memAuditor) find(action audit.Action, module, version string) []audit.Event {
	a.mu.Lock()
	defer a.mu.Unlock()
	var out []audit.Event
	for _, ev := range a.events {
		if ev.Action == action && ev.Module == module && ev.Version == version {
			out = append(out, ev)
		}
	}
	return out
}

// verifyingProxy is modgate in-process with sumdb.verify on against db.
type verifyingProxy struct {
	URL      string
	CacheDir string
	Audit    *memAuditor
	Registry *prometheus.Registry
}

func startVerifyingProxy(t *testing.T, upstreamURL, key, cacheDir string, mutate ...func(*config.Config)) *verifyingProxy {
	t.Helper()
	return startVerifyingProxyWithPolicy(t, nil, upstreamURL, key, cacheDir, mutate...)
}

// startVerifyingProxyWithPolicy is startVerifyingProxy deciding with pol (nil:
// every caller may do everything).
func startVerifyingProxyWithPolicy(t *testing.T, pol gate.Policy, upstreamURL, key, cacheDir string, mutate ...func(*config.Config)) *verifyingProxy {
	t.Helper()
	cfg := config.Defaults()
	cfg.Cache.Dir = cacheDir
	cfg.Upstream.Proxies = upstreamURL
	cfg.Upstream.RetryBackoff = config.Duration(1e6)
	cfg.Auth.Anonymous = true
	cfg.SumDB.Names = []string{testSumDB}
	cfg.SumDB.Verify = true
	cfg.SumDB.Key = key
	for _, m := range mutate {
		m(&cfg)
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	p := &verifyingProxy{CacheDir: cacheDir, Audit: &memAuditor{}, Registry: prometheus.NewRegistry()}
	opts := app.ServerOptions{Config: cfg, Audit: p.Audit, Registry: p.Registry}
	if pol != nil {
		opts.Policy = pol
	}
	s, err := app.NewServer(opts)
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	p.URL = ts.URL
	return p
}

func (p *verifyingProxy) integrityFailures(t *testing.T) float64 {
	t.Helper()
	n, err := testutil.GatherAndCount(p.Registry, "modgate_integrity_failures_total")
	if err != nil || n != 1 {
		t.Fatalf("modgate_integrity_failures_total not registered: %v", err)
	}
	mfs, _ := p.Registry.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "modgate_integrity_failures_total" {
			return mf.GetMetric()[0].GetCounter().GetValue()
		}
	}
	return 0
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && resp.StatusCode == http.StatusOK {
		// A streamed object whose check failed ends in a broken transfer.
		return -1, err.Error()
	}
	return resp.StatusCode, string(body)
}

func cachedObject(dir, path string) bool {
	_, err := os.Stat(filepath.Join(dir, "mod", filepath.FromSlash(strings.TrimPrefix(path, "/"))))
	return err == nil
}

func helloModules(t *testing.T) []proxytest.Module {
	t.Helper()
	var ms []proxytest.Module
	for _, m := range proxytest.StandardModules() {
		if m.Path == proxytest.HelloPath {
			ms = append(ms, m)
		}
	}
	if len(ms) < 2 {
		t.Fatal("fixture: want two hello versions")
	}
	return ms
}

// With verification on, every standard module passes: the go command downloads
// them all and modgate looked each up in the checksum database itself.
func TestVerifyGenuineModulesPass(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	mg := startVerifyingProxy(t, upstream.URL, db.Key(), t.TempDir())
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	var args []string
	for _, m := range upstream.Modules() {
		args = append(args, m.String())
	}
	if _, stderr, err := g.Run("", append([]string{"mod", "download"}, args...)...); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, stderr)
	}
	for _, m := range upstream.Modules() {
		if !cachedObject(mg.CacheDir, proxytest.ZipPath(m.Path, m.Version)) {
			t.Errorf("%s: zip not cached after a verified download", m)
		}
	}
	if got := mg.integrityFailures(t); got != 0 {
		t.Errorf("modgate_integrity_failures_total = %v, want 0", got)
	}
	// modgate's own lookups and the go command's share the cache: each version
	// is looked up in the database once.
	for _, path := range []string{proxytest.HelloPath, proxytest.LegacyPath} {
		versions := 0
		for _, m := range upstream.Modules() {
			if m.Path == path {
				versions++
			}
		}
		if n := db.Lookups(path); n != versions {
			t.Errorf("%s: %d database lookups for %d versions, want one each", path, n, versions)
		}
	}
	if _, err := os.Stat(filepath.Join(mg.CacheDir, "sumdb-state", testSumDB, "latest")); err != nil {
		t.Errorf("verified tree head not persisted: %v", err)
	}
}

// Refusals: the checksum database vouches for other bytes than the upstream
// serves. modgate answers 502 with both hashes before the go command sees a byte,
// caches nothing, counts it and records integrity_failure.
func TestVerifyRefusesMismatch(t *testing.T) {
	t.Parallel()
	genuine := helloModules(t)
	tests := []struct {
		name    string
		setup   func(t *testing.T) (upstream *proxytest.Server, key string)
		path    string // the object requested
		version string
		want    string // in the 502 body
		// integrity: the refusal is a hash mismatch (not merely an unreadable zip).
		integrity bool
	}{
		{
			name: "fail/tampered-record",
			setup: func(t *testing.T) (*proxytest.Server, string) {
				up := proxytest.NewServer(t, genuine...)
				db := sumdbtest.Mount(t, up, testSumDB)
				if err := db.TamperHash(proxytest.HelloPath, "v1.1.0"); err != nil {
					t.Fatal(err)
				}
				return up, db.Key()
			},
			path: proxytest.ZipPath(proxytest.HelloPath, "v1.1.0"), version: "v1.1.0",
			want: "checksum mismatch for mod.test/hello@v1.1.0: upstream served h1:", integrity: true,
		},
		{
			name: "fail/altered-zip",
			setup: func(t *testing.T) (*proxytest.Server, string) {
				// The database knows the genuine module; the mirror serves other
				// source under the same version (a well-formed but substituted zip).
				altered := genuine[1]
				altered.Files = maps.Clone(altered.Files)
				for name := range altered.Files {
					if strings.HasSuffix(name, ".go") {
						altered.Files[name] += "\nfunc init() { println(\"pwned\") }\n"
					}
				}
				up := proxytest.NewServer(t, genuine[0], altered)
				db := sumdbtest.New(t, testSumDB, genuine)
				up.MountSumDB(db)
				return up, db.Key()
			},
			path: proxytest.ZipPath(proxytest.HelloPath, genuine[1].Version), version: genuine[1].Version,
			want: "checksum mismatch for mod.test/hello@" + genuine[1].Version + ": upstream served h1:", integrity: true,
		},
		{
			name: "fail/altered-go-mod",
			setup: func(t *testing.T) (*proxytest.Server, string) {
				altered := genuine[1]
				altered.Files = maps.Clone(altered.Files)
				altered.Files["go.mod"] = string(genuine[1].GoMod()) + "\nrequire evil.test/backdoor v1.0.0\n"
				up := proxytest.NewServer(t, genuine[0], altered)
				db := sumdbtest.New(t, testSumDB, genuine)
				up.MountSumDB(db)
				return up, db.Key()
			},
			path: proxytest.ModPath(proxytest.HelloPath, genuine[1].Version), version: genuine[1].Version,
			want: "checksum mismatch for mod.test/hello@" + genuine[1].Version + "/go.mod: upstream served h1:", integrity: true,
		},
		{
			name: "fail/corrupt-bytes-in-transit",
			setup: func(t *testing.T) (*proxytest.Server, string) {
				up := proxytest.NewServer(t, genuine...)
				db := sumdbtest.Mount(t, up, testSumDB)
				up.SetFault(proxytest.ZipPath(proxytest.HelloPath, "v1.0.0"), proxytest.Fault{Corrupt: true, CorruptOffset: 60})
				return up, db.Key()
			},
			path: proxytest.ZipPath(proxytest.HelloPath, "v1.0.0"), version: "v1.0.0",
			want: "",
		},
		{
			name: "fail/unknown-to-database",
			setup: func(t *testing.T) (*proxytest.Server, string) {
				up := proxytest.NewServer(t, genuine...)
				db := sumdbtest.New(t, testSumDB, genuine[:1])
				up.MountSumDB(db)
				return up, db.Key()
			},
			path: proxytest.ZipPath(proxytest.HelloPath, genuine[1].Version), version: genuine[1].Version,
			want: "cannot verify mod.test/hello@" + genuine[1].Version + ": checksum database sum.mod.test has no record of it",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			upstream, key := tt.setup(t)
			mg := startVerifyingProxy(t, upstream.URL, key, t.TempDir())
			status, body := get(t, mg.URL+tt.path)
			if status != http.StatusBadGateway || !strings.Contains(body, tt.want) {
				t.Fatalf("GET %s = %d %q, want 502 containing %q", tt.path, status, body, tt.want)
			}
			if strings.Count(strings.TrimSpace(body), "\n") != 0 {
				t.Errorf("reason is not one line: %q", body)
			}
			if cachedObject(mg.CacheDir, tt.path) {
				t.Errorf("refused object was cached")
			}
			// Nothing is remembered: the next request asks the upstream again (a
			// mirror that served bad bytes is only asked after the others, and
			// there are none here).
			hits := upstream.Hits(tt.path)
			if status, _ := get(t, mg.URL+tt.path); status != http.StatusBadGateway {
				t.Errorf("second request: %d, want 502", status)
			}
			if upstream.Hits(tt.path) <= hits {
				t.Errorf("second request did not retry the upstream")
			}
			if !tt.integrity {
				return
			}
			if got := mg.integrityFailures(t); got != 2 {
				t.Errorf("modgate_integrity_failures_total = %v, want 2", got)
			}
			kind := strings.TrimPrefix(filepath.Ext(tt.path), ".")
			evs := mg.Audit.find(audit.Action(kind), proxytest.HelloPath, tt.version)
			if len(evs) == 0 {
				t.Fatalf("no %s audit event", kind)
			}
			if evs[0].Outcome != audit.OutcomeIntegrityFailure || !strings.Contains(evs[0].Reason, "checksum mismatch") {
				t.Errorf("audit event: outcome %q reason %q, want integrity_failure with the mismatch", evs[0].Outcome, evs[0].Reason)
			}
		})
	}

	t.Run("go-command-sees-modgates-refusal", func(t *testing.T) {
		t.Parallel()
		upstream := proxytest.NewServer(t, genuine...)
		db := sumdbtest.Mount(t, upstream, testSumDB)
		if err := db.TamperHash(proxytest.HelloPath, "v1.1.0"); err != nil {
			t.Fatal(err)
		}
		mg := startVerifyingProxy(t, upstream.URL, db.Key(), t.TempDir())
		g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
		_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0")
		if err == nil || !strings.Contains(stderr, "checksum mismatch for mod.test/hello@v1.1.0") {
			t.Fatalf("go mod download: err=%v, want modgate's refusal:\n%s", err, stderr)
		}
		if strings.Contains(stderr, "SECURITY ERROR") {
			t.Errorf("the go command got the bytes and verified them itself; modgate should have refused first:\n%s", stderr)
		}
	})
}

// sumdb.no_verify and private paths are served without a lookup.
func TestVerifySkipsNoVerifyPatterns(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, helloModules(t)...)
	db := sumdbtest.New(t, testSumDB, nil) // knows nothing
	upstream.MountSumDB(db)
	mg := startVerifyingProxy(t, upstream.URL, db.Key(), t.TempDir(), func(c *config.Config) {
		c.SumDB.NoVerify = []string{"mod.test/hello"}
	})
	path := proxytest.ZipPath(proxytest.HelloPath, "v1.0.0")
	if status, body := get(t, mg.URL+path); status != http.StatusOK {
		t.Fatalf("GET %s = %d %q, want 200 (no_verify)", path, status, body)
	}
	if n := db.Lookups(proxytest.HelloPath); n != 0 {
		t.Errorf("no_verify module was looked up %d times", n)
	}
}

// The newest verified tree head survives a restart: a database that later
// presents a different history under the same key (a fork) is refused, while a
// modgate that never saw the first history would have accepted it.
func TestVerifyDetectsForkedLogAcrossRestart(t *testing.T) {
	t.Parallel()
	genuine := helloModules(t)
	upstream := proxytest.NewServer(t, genuine...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	cacheDir := t.TempDir()
	first := startVerifyingProxy(t, upstream.URL, db.Key(), cacheDir)
	p0 := proxytest.ZipPath(proxytest.HelloPath, genuine[0].Version)
	if status, body := get(t, first.URL+p0); status != http.StatusOK {
		t.Fatalf("GET %s = %d %q", p0, status, body)
	}

	// The same key signs a different log of the same size: the records in
	// another order.
	forked := sumdbtest.New(t, testSumDB, genuine[1:])
	if err := forked.Add(genuine[0]); err != nil {
		t.Fatal(err)
	}
	if forked.Key() != db.Key() || forked.Size() != db.Size() {
		t.Fatalf("fixture: forked db key/size differ")
	}
	upstream.MountSumDB(forked)

	restarted := startVerifyingProxy(t, upstream.URL, db.Key(), cacheDir, func(c *config.Config) {
		c.SumDB.LatestTTL = 0
	})
	p1 := proxytest.ZipPath(proxytest.HelloPath, genuine[1].Version)
	status, body := get(t, restarted.URL+p1)
	if status != http.StatusBadGateway || !strings.Contains(body, "misbehaving") {
		t.Fatalf("after fork: GET %s = %d %q, want 502 misbehaving", p1, status, body)
	}
	if cachedObject(cacheDir, p1) {
		t.Error("object verified against a forked log was cached")
	}
	if got := restarted.integrityFailures(t); got < 1 {
		t.Errorf("modgate_integrity_failures_total = %v, want >= 1", got)
	}

	// Control: without the persisted state the fork is indistinguishable.
	fresh := startVerifyingProxy(t, upstream.URL, db.Key(), t.TempDir())
	if status, body := get(t, fresh.URL+p1); status != http.StatusOK {
		t.Fatalf("fresh modgate: GET %s = %d %q, want 200", p1, status, body)
	}
}

// A mirror that served bytes failing verification is passed over for that object:
// the next request is answered from the next mirror in the list.
func TestVerifyFallsBackToNextMirror(t *testing.T) {
	t.Parallel()
	genuine := helloModules(t)
	for _, sep := range []string{",", "|"} {
		t.Run("sep="+sep, func(t *testing.T) {
			t.Parallel()
			bad := proxytest.NewServer(t, genuine...)
			good := proxytest.NewServer(t, genuine...)
			db := sumdbtest.Mount(t, bad, testSumDB)
			good.MountSumDB(db)
			path := proxytest.ZipPath(proxytest.HelloPath, "v1.1.0")
			bad.SetFault(path, proxytest.Fault{Corrupt: true, CorruptOffset: 60})
			mg := startVerifyingProxy(t, bad.URL+sep+good.URL, db.Key(), t.TempDir())
			if status, body := get(t, mg.URL+path); status != http.StatusBadGateway {
				t.Fatalf("first request: %d %q, want 502", status, body)
			}
			status, body := get(t, mg.URL+path)
			if status != http.StatusOK {
				t.Fatalf("second request: %d %q, want 200 from the second mirror", status, body)
			}
			want, _ := proxytest.Zip(genuine[2])
			if genuine[2].Version != "v1.1.0" || body != string(want) {
				t.Error("second request did not serve the genuine zip")
			}
			if good.Hits(path) != 1 || !cachedObject(mg.CacheDir, path) {
				t.Errorf("second mirror hits %d, cached %v", good.Hits(path), cachedObject(mg.CacheDir, path))
			}
		})
	}
}
