package e2e

import (
	"context"
	"errors"
	"github.com/modgate/modgate/internal/app"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/mirror"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// depModule requires hello (imported) and retract (not imported): the build's
// go.sum then holds content lines for dep and hello and only a /go.mod line for
// retract, the shape every real go.sum has.
var depModule = proxytest.Module{Path: "mod.test/dep", Version: "v1.0.0", Files: map[string]string{
	"go.mod": "module mod.test/dep\n\ngo 1.21\n\nrequire (\n\tmod.test/hello v1.1.0\n\tmod.test/retract v1.2.0\n)\n",
	"dep.go": "// Package dep is a proxytest fixture.\npackage dep\n\nimport \"mod.test/hello\"\n\n// Dep greets.\nfunc Dep() string { return hello.Hello() }\n",
}}

// mirrorUpstream is the standard fixture set plus depModule, with a checksum
// database.
func mirrorUpstream(t *testing.T) (*proxytest.Server, *sumdbtest.DB) {
	t.Helper()
	up := proxytest.NewServer(t, append(proxytest.StandardModules(), depModule)...)
	return up, sumdbtest.Mount(t, up, testSumDB)
}

// buildFixture makes the project a platform team would pre-warm for: a main
// module importing mod.test/dep and mod.test/Upper/Case, tidied straight against
// the upstream. It returns the directory holding go.mod, go.sum and main.go.
func buildFixture(t *testing.T, up *proxytest.Server) string {
	t.Helper()
	g := gotest.New(t, "GOPROXY="+up.URL, "GOSUMDB=off")
	dir := g.MainModule("example.com/app")
	main := "package main\n\nimport (\n\t\"mod.test/Upper/Case\"\n\t\"mod.test/dep\"\n)\n\nfunc main() { println(dep.Dep(), upper.Version) }\n"
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte(main), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, stderr, err := g.Run(dir, "mod", "tidy"); err != nil {
		t.Fatalf("go mod tidy against the upstream: %v\n%s", err, stderr)
	}
	return dir
}

// copyProject copies go.mod, go.sum and main.go to a fresh directory: the
// developer's checkout on the other side.
func copyProject(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	for _, f := range []string{"go.mod", "go.sum", "main.go"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(dst, f), b, 0o644)
	}
	return dst
}

func syncGoSum(t *testing.T, proxyURL, dir string, graph bool) mirror.Summary {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	targets, err := mirror.ParseGoSum(data)
	if err != nil {
		t.Fatal(err)
	}
	s := &mirror.Syncer{BaseURL: proxyURL, Concurrency: 4, Graph: graph}
	sum, err := s.Run(context.Background(), targets, nil)
	if err != nil {
		t.Fatalf("sync: %v: %+v", err, sum.Failures)
	}
	return sum
}

// downloadGraph runs what a developer runs on a fresh machine: `go mod download
// [all]` and a build, with an empty module cache, through proxyURL only.
func downloadGraph(t *testing.T, proxyURL, project string, all bool) {
	t.Helper()
	g := gotest.New(t, "GOPROXY="+proxyURL, "GOSUMDB=off")
	dir := copyProject(t, project)
	args := []string{"mod", "download"}
	if all {
		args = append(args, "all")
	}
	if _, stderr, err := g.Run(dir, args...); err != nil {
		t.Fatalf("go %v through %s: %v\n%s", args, proxyURL, err, stderr)
	}
	if _, stderr, err := g.Run(dir, "build", "-o", filepath.Join(t.TempDir(), "app"), "."); err != nil {
		t.Fatalf("go build: %v\n%s", err, stderr)
	}
}

// Pre-warm from a go.sum, take every upstream away, and the go command still
// downloads the whole graph through modgate — both the warmed modgate (upstream
// simply gone) and one over the same cache in offline mode.
func TestSyncFillsCacheForOfflineUse(t *testing.T) {
	up, _ := mirrorUpstream(t)
	project := buildFixture(t, up)
	mg, cacheDir := startProxy(t, up.URL, func(c *config.Config) { c.Upstream.Retries = 0 })

	sum := syncGoSum(t, mg.URL, project, false)
	if sum.Failed != 0 || sum.Objects == 0 {
		t.Fatalf("sync summary: %+v", sum)
	}
	// Resumable: a second run is all cache hits.
	before := len(up.Paths())
	syncGoSum(t, mg.URL, project, false)
	if after := len(up.Paths()); after != before {
		t.Errorf("re-sync asked the upstream %d more times, want 0", after-before)
	}
	// A list fetched while online, to be served as it is offline.
	if resp, err := http.Get(mg.URL + proxytest.ListPath(proxytest.HelloPath)); err != nil || resp.StatusCode != 200 {
		t.Fatalf("warming the list: %v %v", err, resp)
	} else {
		resp.Body.Close()
	}
	offline, _ := startProxy(t, "", func(c *config.Config) {
		c.Cache.Dir = cacheDir
		c.Cache.ListTTL = 0 // every list request would revalidate: offline, the stored copy answers
		c.Upstream.Offline = true
	})
	// The go.sum set is exactly what the build needs.
	downloadGraph(t, offline.URL, project, false)

	// `go mod download all` also wants the zips of modules that are in the graph
	// only for their go.mod (mod.test/retract, required by dep): --graph warms them.
	if n := up.Hits(proxytest.ZipPath(proxytest.RetractPath, "v1.2.0")); n != 0 {
		t.Errorf("go.sum sync fetched a zip the build never needs (%d times)", n)
	}
	syncGoSum(t, mg.URL, project, true)
	if n := up.Hits(proxytest.ZipPath(proxytest.RetractPath, "v1.2.0")); n != 1 {
		t.Errorf("graph sync fetched retract v1.2.0's zip %d times, want 1", n)
	}

	up.Close()
	downloadGraph(t, mg.URL, project, true)
	downloadGraph(t, offline.URL, project, true)

	tests := []struct {
		name, path string
		status     int
		body       string
	}{
		{"ok/cached-list-served-as-is", proxytest.ListPath(proxytest.HelloPath), 200, "v1.0.0\nv1.1.0\n"},
		{"fail/uncached-list", proxytest.ListPath("mod.test/nowhere"), 404, "not in the offline mirror"},
		{"fail/uncached-zip", proxytest.ZipPath(proxytest.HelloPath, "v1.0.0"), 404, "not in the offline mirror"},
		{"ok/cached-zip", proxytest.ZipPath(proxytest.HelloPath, "v1.1.0"), 200, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, err := http.Get(offline.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status || !strings.Contains(string(body), tt.body) {
				t.Errorf("%s: %d %q, want %d containing %q", tt.path, resp.StatusCode, body, tt.status, tt.body)
			}
		})
	}
}

// Export on one modgate, import on a second with no upstream at all, and the go
// command builds from the second. A bundle with one altered byte is rejected whole.
func TestBundleCarriesGraphIntoAirGap(t *testing.T) {
	up, _ := mirrorUpstream(t)
	project := buildFixture(t, up)
	outside, outsideCache := startProxy(t, up.URL)
	syncGoSum(t, outside.URL, project, true)
	// A list and a checksum database lookup cached too, so the bundle carries both.
	for _, p := range []string{proxytest.ListPath(proxytest.HelloPath), "/sumdb/" + testSumDB + "/lookup/" + proxytest.HelloPath + "@v1.1.0"} {
		resp, err := http.Get(outside.URL + p)
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("warming %s: %v %v", p, err, resp)
		}
		resp.Body.Close()
	}

	bundle := filepath.Join(t.TempDir(), "graph.tar.zst")
	exp, err := mirror.Export(context.Background(), outsideCache, bundle, mirror.ExportOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if exp.Modules == 0 || exp.Objects == 0 {
		t.Fatalf("export: %+v", exp)
	}

	t.Run("fail/one-altered-byte", func(t *testing.T) {
		data, err := os.ReadFile(bundle)
		if err != nil {
			t.Fatal(err)
		}
		data[len(data)/2] ^= 0x01
		bad := filepath.Join(t.TempDir(), "bad.tar.zst")
		os.WriteFile(bad, data, 0o644)
		dir := t.TempDir()
		store, err := storage.NewDisk(dir)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := mirror.Import(context.Background(), store, bad); !errors.Is(err, mirror.ErrBundleRejected) {
			t.Fatalf("altered bundle: err = %v, want ErrBundleRejected", err)
		}
		assertNoObjects(t, dir)
	})

	insideCache := t.TempDir()
	store, err := storage.NewDisk(insideCache)
	if err != nil {
		t.Fatal(err)
	}
	imp, err := mirror.Import(context.Background(), store, bundle)
	if err != nil {
		t.Fatal(err)
	}
	if imp.Installed != exp.Objects || imp.SumDBChecked != 1 {
		t.Errorf("import: %+v, want %d installed and 1 checksum database record checked", imp, exp.Objects)
	}
	again, err := mirror.Import(context.Background(), store, bundle)
	if err != nil || again.Installed != 0 || again.Unchanged != exp.Objects {
		t.Errorf("second import: %+v, %v; want everything unchanged", again, err)
	}

	up.Close()
	inside, _ := startProxy(t, "", func(c *config.Config) {
		c.Cache.Dir = insideCache
		c.Upstream.Offline = true
	})
	downloadGraph(t, inside.URL, project, true)
}

// assertNoObjects fails if dir holds any file outside the store's scratch space.
func assertNoObjects(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && d.Name() == ".tmp" {
			return fs.SkipDir
		}
		if !d.IsDir() {
			t.Errorf("rejected bundle left %s in the cache", p)
		}
		return nil
	})
}

// A scheduled sync job runs inside modgate through its own handler: the latest N
// versions of each listed module land in the cache, and the metrics say so.
func TestScheduledSyncInProcess(t *testing.T) {
	up, _ := mirrorUpstream(t)
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = up.URL
	cfg.SumDB.Names = nil
	cfg.SumDB.Verify = false // the fixtures are in no checksum database modgate can verify against
	reg := prometheus.NewRegistry()
	s, err := app.NewServer(app.ServerOptions{Config: cfg, Registry: reg})
	if err != nil {
		t.Fatal(err)
	}
	id := &identity.Identity{Subject: "modgate-sync", Method: identity.MethodInternal}
	sched := mirror.NewScheduler(nil, s.InProcessTransport(id), t.TempDir(), slog.New(slog.DiscardHandler), reg)
	sum := sched.RunJob(context.Background(), "0", mirror.Job{Modules: []string{proxytest.RetractPath, proxytest.HelloV2Path + "@v2.0.0"}, Latest: 2})
	if sum.Failed != 0 {
		t.Fatalf("scheduled sync failures: %+v", sum.Failures)
	}
	for _, p := range []string{
		proxytest.ZipPath(proxytest.RetractPath, "v1.2.0"), proxytest.ZipPath(proxytest.RetractPath, "v1.1.0"),
		proxytest.ZipPath(proxytest.HelloV2Path, "v2.0.0"),
	} {
		if up.Hits(p) != 1 {
			t.Errorf("%s fetched %d times, want 1", p, up.Hits(p))
		}
	}
	if up.Hits(proxytest.ZipPath(proxytest.RetractPath, "v1.0.0")) != 0 {
		t.Errorf("latest 2 synced the third-newest version too")
	}
	// In the cache: the in-process requests took the normal cache path (the
	// server admits no anonymous caller, so the sync's own identity was used).
	if _, err := s.Cache().Store().Stat(context.Background(), "mod/mod.test/retract/@v/v1.2.0.zip"); err != nil {
		t.Errorf("synced zip not in the cache: %v", err)
	}
	if got := testutil.ToFloat64(metricVec(t, reg, "modgate_mirror_sync_objects_total")); got != float64(sum.Objects) || got < 7 {
		t.Errorf("objects metric = %v, summary %d", got, sum.Objects)
	}
	if got := testutil.ToFloat64(metricVec(t, reg, "modgate_mirror_sync_last_success_timestamp_seconds")); got == 0 {
		t.Errorf("last success time not set")
	}
}

// metricVec finds a registered collector by metric name.
func metricVec(t *testing.T, reg *prometheus.Registry, name string) prometheus.Collector {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == name && len(mf.Metric) == 1 {
			m := mf.Metric[0]
			v := m.GetCounter().GetValue() + m.GetGauge().GetValue()
			return prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "x"}, func() float64 { return v })
		}
	}
	t.Fatalf("metric %s not found", name)
	return nil
}
