package bench

import (
	"io"
	"math"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestMedian(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []float64
		want float64
	}{
		{"odd/unsorted", []float64{3, 1, 2}, 2},
		{"even/mean-of-middle", []float64{4, 1, 3, 2}, 2.5},
		{"one", []float64{7}, 7},
		{"outlier-ignored", []float64{1, 1, 100}, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			in := append([]float64(nil), tc.in...)
			if got := median(tc.in); got != tc.want {
				t.Errorf("median(%v) = %v, want %v", tc.in, got, tc.want)
			}
			for i := range in {
				if in[i] != tc.in[i] {
					t.Fatalf("median reordered its input: %v", tc.in)
				}
			}
		})
	}
	if !math.IsNaN(median(nil)) {
		t.Error("median(nil) is not NaN")
	}
}

func TestPercentile(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		in   []float64
		p    float64
		want float64
	}{
		{"one", []float64{5}, 0.99, 5},
		{"p99-of-four-is-max", []float64{1, 2, 3, 4}, 0.99, 4},
		{"p25-of-four", []float64{1, 2, 3, 4}, 0.25, 1},
		{"p50-of-five", []float64{1, 2, 3, 4, 5}, 0.5, 3},
		{"outlier-is-p99", []float64{1, 1, 1, 1, 1, 1, 1, 1, 100}, 0.99, 100},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			if got := percentile(tc.in, tc.p); got != tc.want {
				t.Errorf("percentile(%v, %v) = %v, want %v", tc.in, tc.p, got, tc.want)
			}
		})
	}
}

func TestJudge(t *testing.T) {
	t.Parallel()
	ratio := func(s ...[]float64) float64 { return median(s[0]) / median(s[1]) }
	for _, tc := range []struct {
		name     string
		a, b     []float64
		want     string // pass, FAIL, inconclusive
		contains float64
	}{
		{"pass/steady-and-close", []float64{10.1, 10.2, 10.0, 10.1, 10.3}, []float64{10.0, 10.1, 9.9, 10.0, 10.2}, "pass", 1.01},
		{"fail/steady-and-slow", []float64{13.1, 13.2, 13.0, 13.1, 13.3}, []float64{10.0, 10.1, 9.9, 10.0, 10.2}, "FAIL", 1.31},
		{"inconclusive/noisy", []float64{5, 15, 9, 20, 7}, []float64{6, 14, 10, 21, 8}, "inconclusive", 1.0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := compared("warm", "s", median(tc.a), "file://", median(tc.b), Target{"<=", 1.1})
			r.judge(bootstrapCI(ratio, tc.a, tc.b))
			got := "inconclusive"
			if r.Pass != nil {
				got = map[bool]string{true: "pass", false: "FAIL"}[*r.Pass]
			}
			if got != tc.want || (got == "inconclusive") != (r.Inconclusive != "") {
				t.Errorf("verdict %s (%q), interval %v–%v; want %s", got, r.Inconclusive, r.CILow, r.CIHigh, tc.want)
			}
			if r.CILow > tc.contains || r.CIHigh < tc.contains {
				t.Errorf("interval %v–%v does not contain %v", r.CILow, r.CIHigh, tc.contains)
			}
		})
	}
}

func TestCompared(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		value     float64
		baseline  float64
		target    Target
		wantRatio float64
		wantPass  bool
	}{
		{"ok/under-bound", 10.5, 10, Target{"<=", 1.1}, 1.05, true},
		{"ok/at-bound", 11, 10, Target{"<=", 1.1}, 1.1, true},
		{"fail/over-bound", 12, 10, Target{"<=", 1.1}, 1.2, false},
		{"ok/at-least", 9, 10, Target{">=", 0.8}, 0.9, true},
		{"fail/below-least", 7, 10, Target{">=", 0.8}, 0.7, false},
		{"fail/zero-baseline", 7, 0, Target{"<=", 1.1}, math.NaN(), false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			r := compared("fig", "s", tc.value, "base", tc.baseline, tc.target)
			if math.IsNaN(tc.wantRatio) != math.IsNaN(r.Ratio) || !math.IsNaN(r.Ratio) && math.Abs(r.Ratio-tc.wantRatio) > 1e-9 {
				t.Errorf("ratio = %v, want %v", r.Ratio, tc.wantRatio)
			}
			if r.Pass == nil || *r.Pass != tc.wantPass {
				t.Errorf("pass = %v, want %v", r.Pass, tc.wantPass)
			}
		})
	}
}

func TestReportMarkdownAndFiles(t *testing.T) {
	t.Parallel()
	rep := &Report{
		Started: time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC),
		Command: "make bench",
		Scenarios: []ScenarioReport{
			{Name: "good", Results: []Result{compared("warm", "s", 2, "file://", 2, Target{"<=", 1.1})}},
			{Name: "bad", Results: []Result{compared("warm", "s", 3, "file://", 2, Target{"<=", 1.1})}},
			{Name: "broken", Error: "upstream | exploded\nbadly"},
			{Name: "nan", Results: []Result{compared("warm", "s", 3, "file://", 0, Target{"<=", 1.1})}},
			{Name: "noisy", Results: []Result{{Figure: "ttfb", Unit: "ms", Value: 3, Target: &Target{"<=", 5}, Inconclusive: "too busy", CILow: math.NaN(), CIHigh: math.Inf(1)}}},
		},
	}
	if !rep.Failed() {
		t.Error("Failed() = false with a missed target")
	}
	dir := t.TempDir()
	path, err := rep.WriteFiles(dir)
	if err != nil {
		t.Fatal(err)
	}
	md, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"| good | warm | 2 s | 2 s (file://) | 1.000 | ≤ 1.100 | pass |",
		"| bad | warm | 3 s | 2 s (file://) | 1.500 | ≤ 1.100 | FAIL |",
		`| broken | — | — | — | — | — | ERROR: upstream \| exploded badly |`,
		"| nan | warm | 3 s | 0 s (file://) | — | ≤ 1.100 | FAIL |",
		"- command: `make bench`",
		"| noisy | ttfb | 3 ms | — | — | ≤ 5 | inconclusive |",
		"- **inconclusive**: too busy",
	} {
		if !strings.Contains(string(md), want) {
			t.Errorf("markdown lacks %q:\n%s", want, md)
		}
	}
	for _, name := range []string{"latest.md", "latest.json", "bench-20261125T090000Z.json"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Error(err)
		}
	}
	js, err := os.ReadFile(filepath.Join(dir, "latest.json"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"ratio": 1.5`) {
		t.Errorf("JSON report lacks the ratio:\n%s", js)
	}
}

func TestParseProcStatCPU(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		stat    string
		want    cpuTime
		wantErr bool
	}{
		{"ok/plain", "1234 (modgate) S 1 1234 1234 0 -1 4194560 100 0 0 0 250 75 0 0 20 0 8 0", cpuTime{2500 * time.Millisecond, 750 * time.Millisecond}, false},
		{"ok/name-with-spaces-and-parens", "1234 (mod (gate) x) S 1 1234 1234 0 -1 4194560 100 0 0 0 3 4 0 0", cpuTime{30 * time.Millisecond, 40 * time.Millisecond}, false},
		{"fail/truncated", "1234 (modgate) S 1 2", cpuTime{}, true},
		{"fail/no-name", "garbage", cpuTime{}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			got, err := parseProcStatCPU([]byte(tc.stat))
			if (err != nil) != tc.wantErr || got != tc.want {
				t.Errorf("parseProcStatCPU = %v, %v; want %v, error %v", got, err, tc.want, tc.wantErr)
			}
		})
	}
}

func TestFileUpstream(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, filepath.Join(dir, "example.com", "a", "@v", "v1.0.0.mod"), "module example.com/a\n")
	writeFile(t, filepath.Join(filepath.Dir(dir), "secret"), "outside the tree")
	up, err := startFileUpstream(dir, 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })

	for _, tc := range []struct {
		name       string
		method     string
		path       string
		wantStatus int
		wantBody   string
	}{
		{"ok/file", "GET", "/example.com/a/@v/v1.0.0.mod", 200, "module example.com/a\n"},
		{"ok/head", "HEAD", "/example.com/a/@v/v1.0.0.mod", 200, ""},
		{"fail/missing", "GET", "/example.com/a/@v/v1.0.1.mod", 404, ""},
		{"fail/directory", "GET", "/example.com/a/@v/", 404, ""},
		{"fail/root-directory", "GET", "/", 404, ""},
		{"fail/escape", "GET", "/../" + filepath.Base(dir) + "/../secret", 404, ""},
		{"fail/method", "POST", "/example.com/a/@v/v1.0.0.mod", 405, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, up.URL+tc.path, nil)
			if err != nil {
				t.Fatal(err)
			}
			start := time.Now()
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			if d := time.Since(start); d < 20*time.Millisecond {
				t.Errorf("answered in %v, before the injected latency", d)
			}
			body := new(strings.Builder)
			if _, err := io.Copy(body, resp.Body); err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != tc.wantStatus {
				t.Errorf("status %d, want %d", resp.StatusCode, tc.wantStatus)
			}
			if tc.wantStatus == 200 && body.String() != tc.wantBody {
				t.Errorf("body %q, want %q", body, tc.wantBody)
			}
		})
	}
	if got := up.Requests(); got != 7 {
		t.Errorf("Requests() = %d, want 7", got)
	}
	if got := up.NotFound(); got != 4 {
		t.Errorf("NotFound() = %d, want 4", got)
	}
}

func writeFile(t *testing.T, path, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}
