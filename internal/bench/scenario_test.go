package bench

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// TestDownloadAllScenario runs the real scenario end to end — populate, the real
// modgate binary, the real go command — on a two-module graph served by a local
// upstream standing in for the public proxy, so it needs no network.
func TestDownloadAllScenario(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	modgate := modgateBin
	tree, goSum := makeTree(t)

	for _, tc := range []struct {
		name    string
		goSum   string
		wantErr string
	}{
		{name: "ok/complete-go-sum", goSum: goSum},
		{
			// A module whose zip hash is missing would be accepted unverified (the
			// checksum database is off in measured runs); the run must refuse.
			name:    "fail/go-sum-missing-a-zip-hash",
			goSum:   dropLine(goSum, "example.com/b v1.0.0 h1:"),
			wantErr: "changed go.sum",
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			// An origin per case: the second run below counts its requests.
			origin, err := startFileUpstream(tree, 0)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { origin.Close() })
			graph := t.TempDir()
			writeFile(t, filepath.Join(graph, "go.mod"), "module example.com/graph\n\ngo 1.26\n\nrequire (\n\texample.com/a v1.0.0\n\texample.com/b v1.0.0\n)\n")
			writeFile(t, filepath.Join(graph, "go.sum"), tc.goSum)
			writeFile(t, filepath.Join(graph, "main.go"), "package main\n\nimport _ \"example.com/a\"\n\nfunc main() {}\n")
			cfg := Config{
				Modgate:       modgate,
				Graph:         graph,
				CacheDir:      t.TempDir(),
				PopulateProxy: origin.URL,
				PopulateSumDB: "off",
				WorkDir:       t.TempDir(),
				Runs:          2,
				Warmup:        1,
				LoadRuns:      1,
				LoadDuration:  time.Second,
				Match:         regexp.MustCompile("^download-all$"),
				Go:            goBin,
			}
			ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
			defer cancel()
			rep, err := Run(ctx, cfg, slog.New(slog.DiscardHandler))
			if tc.wantErr != "" {
				if err == nil || rep == nil || len(rep.Scenarios) != 1 || !strings.Contains(rep.Scenarios[0].Error, tc.wantErr) {
					t.Fatalf("Run = %v, report %+v; want a scenario error containing %q", err, rep, tc.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			res := results(rep)
			warm := res["warm go mod download all, median of 2"]
			if (warm.Pass == nil && warm.Inconclusive == "") || warm.Baseline <= 0 || warm.Value <= 0 || len(warm.Samples["modgate (s)"]) != 2 || len(warm.Samples["file:// (s)"]) != 2 {
				t.Errorf("warm result incomplete: %+v", warm)
			}
			if got := warm.Samples["requests served by modgate per run"]; len(got) != 2 || got[0] != 6 {
				t.Errorf("modgate served %v requests per run, want 6 (info, mod, zip of two modules)", got)
			}
			up := res["upstream requests during warm runs"]
			if up.Value != 0 || up.Pass == nil || !*up.Pass {
				t.Errorf("warm runs reached the upstream: %+v", up)
			}
			cold := res["cold go mod download all through modgate (loopback upstream)"]
			if cold.Value <= 0 || !strings.Contains(strings.Join(cold.Notes, " "), "2 modules; 6 upstream requests") {
				t.Errorf("cold result: %+v", cold)
			}

			// A second run reuses the populated tree instead of asking the origin.
			before := origin.Requests()
			cfg.WorkDir = t.TempDir()
			cfg.Runs, cfg.Warmup = 1, 0
			if _, err := Run(ctx, cfg, slog.New(slog.DiscardHandler)); err != nil {
				t.Fatal(err)
			}
			if got := origin.Requests() - before; got != 0 {
				t.Errorf("second run asked the populate proxy %d times, want 0", got)
			}
		})
	}
}

func results(rep *Report) map[string]Result {
	m := make(map[string]Result)
	for _, s := range rep.Scenarios {
		for _, r := range s.Results {
			m[r.Figure] = r
		}
	}
	return m
}

// modgateBin is the modgate binary under test, built once by TestMain.
var modgateBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "modgate-bench-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	modgateBin = filepath.Join(dir, "modgate")
	cmd := exec.Command("go", "build", "-o", modgateBin, "github.com/modgate/modgate/cmd/modgate")
	if out, err := cmd.CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building modgate: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// makeTree writes a GOPROXY tree holding example.com/a v1.0.0, which requires
// example.com/b v1.0.0, and returns it with the go.sum lines for both.
func makeTree(t *testing.T) (string, string) {
	t.Helper()
	tree := t.TempDir()
	var sum strings.Builder
	for _, m := range []struct {
		path, gomod, src string
	}{
		{"example.com/a", "module example.com/a\n\ngo 1.26\n\nrequire example.com/b v1.0.0\n", "package a\n\nimport _ \"example.com/b\"\n"},
		{"example.com/b", "module example.com/b\n\ngo 1.26\n", "package b\n"},
	} {
		mv := module.Version{Path: m.path, Version: "v1.0.0"}
		src := t.TempDir()
		writeFile(t, filepath.Join(src, "go.mod"), m.gomod)
		writeFile(t, filepath.Join(src, filepath.Base(m.path)+".go"), m.src)
		dir := filepath.Join(tree, m.path, "@v")
		writeFile(t, filepath.Join(dir, "v1.0.0.info"), `{"Version":"v1.0.0","Time":"2026-01-01T00:00:00Z"}`)
		writeFile(t, filepath.Join(dir, "v1.0.0.mod"), m.gomod)
		var zip bytes.Buffer
		if err := modzip.CreateFromDir(&zip, mv, src); err != nil {
			t.Fatal(err)
		}
		zipPath := filepath.Join(dir, "v1.0.0.zip")
		if err := os.WriteFile(zipPath, zip.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		zipHash, err := dirhash.HashZip(zipPath, dirhash.Hash1)
		if err != nil {
			t.Fatal(err)
		}
		modHash, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
			return io.NopCloser(strings.NewReader(m.gomod)), nil
		})
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(&sum, "%s %s %s\n%s %s/go.mod %s\n", m.path, mv.Version, zipHash, m.path, mv.Version, modHash)
	}
	return tree, sum.String()
}

func dropLine(s, prefix string) string {
	var out []string
	for _, l := range strings.SplitAfter(s, "\n") {
		if !strings.HasPrefix(l, prefix) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "")
}

// TestColdStorm runs the storm scenario at a small size: many clients asking a
// fresh modgate for one zip must cause one upstream fetch per zip, and every
// client must get the whole, correct body.
func TestColdStorm(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	env := &Env{
		Config: Config{Modgate: modgateBin, Go: goBin},
		Log:    slog.New(slog.DiscardHandler),
		Dir:    t.TempDir(),
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	p := stormParams{Clients: 20, ZipSize: 1 << 20, Latency: 20 * time.Millisecond, Rounds: 2, HashEvery: 5}
	rs, err := runStorm(ctx, env, p)
	if err != nil {
		t.Fatal(err)
	}
	byFigure := make(map[string]Result)
	for _, r := range rs {
		byFigure[r.Figure] = r
	}
	fetches := byFigure["upstream fetches per uncached 1 MB zip, 20 concurrent clients (worst of 2 storms)"]
	if got := fetches.Samples["fetches per storm"]; len(got) != 2 || got[0] != 1 || got[1] != 1 || fetches.Pass == nil || !*fetches.Pass {
		t.Errorf("fetches: %+v", fetches)
	}
	single := byFigure["time to first byte over the upstream's own, a single cold client"]
	if single.Figure == "" || single.Value < -p.Latency.Seconds()*1000 {
		t.Errorf("single-client time to first byte: %+v", single)
	}
	ttfb := byFigure["time to first byte over the upstream's own, p50 of 20 concurrent clients (median of 2 storms)"]
	for _, v := range ttfb.Samples["p50 through modgate, cold (ms)"] {
		if v < 20 {
			t.Errorf("a cold storm's first byte came after %v ms, before the upstream's 20 ms latency", v)
		}
	}
	if ttfb.Pass == nil && ttfb.Inconclusive == "" {
		t.Errorf("time to first byte neither judged nor inconclusive: %+v", ttfb)
	}
}

// TestPopulateConcurrently: two benchmark runs populating one cache directory at
// once (two checkouts on one machine) both end up with the complete tree.
func TestPopulateConcurrently(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	tree, goSum := makeTree(t)
	origin, err := startFileUpstream(tree, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { origin.Close() })
	graph := t.TempDir()
	writeFile(t, filepath.Join(graph, "go.mod"), "module example.com/graph\n\ngo 1.26\n\nrequire (\n\texample.com/a v1.0.0\n\texample.com/b v1.0.0\n)\n")
	writeFile(t, filepath.Join(graph, "go.sum"), goSum)
	writeFile(t, filepath.Join(graph, "main.go"), "package main\n\nimport _ \"example.com/a\"\n\nfunc main() {}\n")
	cacheDir := t.TempDir()

	type result struct {
		dir string
		n   int
		err error
	}
	results := make(chan result, 2)
	for range 2 {
		go func() {
			env := &Env{
				Config: Config{Graph: graph, CacheDir: cacheDir, PopulateProxy: origin.URL, PopulateSumDB: "off", Go: goBin},
				Log:    slog.New(slog.DiscardHandler),
			}
			dir, n, err := populate(context.Background(), env)
			results <- result{dir, n, err}
		}()
	}
	a, b := <-results, <-results
	if a.err != nil || b.err != nil {
		t.Fatalf("populate: %v; %v", a.err, b.err)
	}
	if a.dir != b.dir || a.n != 2 || b.n != 2 {
		t.Errorf("populate returned %q with %d zips and %q with %d; want one tree with 2", a.dir, a.n, b.dir, b.n)
	}
	entries, err := os.ReadDir(filepath.Dir(a.dir))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("cache directory holds %d entries, want only the tree: %v", len(entries), entries)
	}
}

// TestOfflineEnvBlocksNetwork: in a measured run's environment, a proxy that is
// not on loopback is unreachable, so a misconfigured run fails instead of
// silently downloading from the internet. (The request goes to the dead loopback
// proxy, never out.)
func TestOfflineEnvBlocksNetwork(t *testing.T) {
	t.Parallel()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	_, goSum := makeTree(t)
	graph := t.TempDir()
	writeFile(t, filepath.Join(graph, "go.mod"), "module example.com/graph\n\ngo 1.26\n\nrequire example.com/b v1.0.0\n")
	writeFile(t, filepath.Join(graph, "go.sum"), goSum)
	c, err := newGoClient(goBin, graph, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	mc := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err = c.downloadAll(ctx, c.offlineEnv("https://proxy.golang.org", mc), mc, 1)
	if err == nil || !strings.Contains(err.Error(), "127.0.0.1:9") {
		t.Fatalf("download through a non-loopback proxy: %v; want a failure at the dead proxy 127.0.0.1:9", err)
	}
}
