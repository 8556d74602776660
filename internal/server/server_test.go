package server_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// fakeUpstream serves a few fixed protocol objects and counts requests.
type fakeUpstream struct {
	*httptest.Server
	hits  atomic.Int32
	files map[string]string
}

func newFakeUpstream(t *testing.T, files map[string]string) *fakeUpstream {
	u := &fakeUpstream{files: files}
	u.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u.hits.Add(1)
		body, ok := u.files[strings.TrimPrefix(r.URL.Path, "/")]
		if !ok {
			http.Error(w, "not found: "+r.URL.Path, http.StatusNotFound)
			return
		}
		io.WriteString(w, body)
	}))
	t.Cleanup(u.Close)
	return u
}

func newTestServer(t *testing.T, upstreamURL string) (*httptest.Server, string) {
	t.Helper()
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = upstreamURL
	cfg.Auth.Anonymous = true
	cfg.Upstream.Retries = 0
	cfg.SumDB.Verify = false // proxytest mounts no checksum database here
	s, err := app.NewServer(app.ServerOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	return ts, cfg.Cache.Dir
}

func get(t *testing.T, method, url string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(method, url, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

const testInfo = `{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}`

func TestProtocolResponses(t *testing.T) {
	t.Parallel()
	zipData := makeZip(t, "example.com/m@v1.0.0/go.mod", "module example.com/m\n")
	up := newFakeUpstream(t, map[string]string{
		"example.com/m/@v/list":        "v1.0.0\n",
		"example.com/m/@latest":        testInfo,
		"example.com/m/@v/v1.0.0.info": testInfo,
		"example.com/m/@v/v1.0.0.mod":  "module example.com/m\n",
		"example.com/m/@v/v1.0.0.zip":  zipData,
		"example.com/m/@v/main.info":   testInfo,
		"example.com/m/@v/v2.0.0.info": testInfo, // wrong version inside
	})
	ts, _ := newTestServer(t, up.URL)

	tests := []struct {
		name, path   string
		status       int
		contentType  string
		cacheControl string
		body         string
	}{
		{"ok/list", "/example.com/m/@v/list", 200, "text/plain; charset=utf-8", "private, max-age=60", "v1.0.0\n"},
		{"ok/latest", "/example.com/m/@latest", 200, "application/json", "private, max-age=60", testInfo},
		{"ok/info", "/example.com/m/@v/v1.0.0.info", 200, "application/json", "private, max-age=31536000, immutable", testInfo},
		{"ok/mod", "/example.com/m/@v/v1.0.0.mod", 200, "text/plain; charset=utf-8", "private, max-age=31536000, immutable", "module example.com/m\n"},
		{"ok/zip", "/example.com/m/@v/v1.0.0.zip", 200, "application/zip", "private, max-age=31536000, immutable", zipData},
		{"ok/query-not-immutable", "/example.com/m/@v/main.info", 200, "application/json", "private, max-age=60", testInfo},
		{"fail/absent-404", "/example.com/none/@v/list", 404, "text/plain; charset=utf-8", "private, max-age=60", "not found: /example.com/none/@v/list\n"},
		{"fail/info-version-mismatch", "/example.com/m/v2/@v/v2.0.0.info", 404, "text/plain; charset=utf-8", "", ""},
		{"fail/wrong-version-inside", "/example.com/m/@v/v2.0.0+incompatible.info", 404, "text/plain; charset=utf-8", "", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, round := range []string{"cold", "warm"} {
				resp, body := get(t, "GET", ts.URL+tt.path)
				if resp.StatusCode != tt.status {
					t.Fatalf("%s: status %d, want %d (%q)", round, resp.StatusCode, tt.status, body)
				}
				if got := resp.Header.Get("Content-Type"); got != tt.contentType {
					t.Errorf("%s: Content-Type %q, want %q", round, got, tt.contentType)
				}
				if tt.cacheControl != "" && resp.Header.Get("Cache-Control") != tt.cacheControl {
					t.Errorf("%s: Cache-Control %q, want %q", round, resp.Header.Get("Cache-Control"), tt.cacheControl)
				}
				if tt.body != "" && body != tt.body {
					t.Errorf("%s: body %q, want %q", round, body, tt.body)
				}
				if resp.StatusCode == 200 && resp.Header.Get("Content-Length") != fmt.Sprint(len(tt.body)) {
					t.Errorf("%s: Content-Length %q, want %d", round, resp.Header.Get("Content-Length"), len(tt.body))
				}
			}
		})
	}
}

func TestUpstreamInfoMismatchIs502(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, map[string]string{"example.com/m/@v/v1.1.0.info": testInfo})
	ts, dir := newTestServer(t, up.URL)
	resp, body := get(t, "GET", ts.URL+"/example.com/m/@v/v1.1.0.info")
	if resp.StatusCode != 502 || !strings.Contains(body, `names version "v1.0.0", not the requested "v1.1.0"`) {
		t.Fatalf("got %d %q, want 502 naming the mismatch", resp.StatusCode, body)
	}
	assertNoObjects(t, dir)
}

func TestZipRangeConditionalAndHead(t *testing.T) {
	t.Parallel()
	zipData := makeZip(t, "example.com/m@v1.0.0/a.go", strings.Repeat("package a\n", 1000))
	up := newFakeUpstream(t, map[string]string{"example.com/m/@v/v1.0.0.zip": zipData})
	ts, _ := newTestServer(t, up.URL)
	url := ts.URL + "/example.com/m/@v/v1.0.0.zip"

	resp, _ := get(t, "HEAD", url)
	if resp.StatusCode != 200 || resp.Header.Get("Content-Length") != fmt.Sprint(len(zipData)) {
		t.Fatalf("HEAD: %d len %s", resp.StatusCode, resp.Header.Get("Content-Length"))
	}
	get(t, "GET", url) // make sure it is stored
	resp, body := get(t, "GET", url, "Range", "bytes=10-19")
	if resp.StatusCode != 206 || body != zipData[10:20] {
		t.Fatalf("Range: %d %q", resp.StatusCode, body)
	}
	etag := resp.Header.Get("ETag")
	lm := resp.Header.Get("Last-Modified")
	if etag == "" || lm == "" {
		t.Fatalf("missing ETag/Last-Modified: %v", resp.Header)
	}
	if resp, _ := get(t, "GET", url, "If-None-Match", etag); resp.StatusCode != 304 {
		t.Errorf("If-None-Match: %d, want 304", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", url, "If-Modified-Since", lm); resp.StatusCode != 304 {
		t.Errorf("If-Modified-Since: %d, want 304", resp.StatusCode)
	}
	if resp, _ := get(t, "POST", url); resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Errorf("POST: %d Allow=%q, want 405", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if n := up.hits.Load(); n != 1 {
		t.Errorf("upstream hits = %d, want 1", n)
	}
}

// Bad input gets a 400 or 404 with one line, and nothing reaches the cache or the
// upstream.
func TestHostileInputWritesNothing(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, nil)
	ts, dir := newTestServer(t, up.URL)
	tests := []struct {
		name, path string
		status     int
	}{
		{"dotdot", "/example.com/../../etc/passwd/@v/list", 400},
		{"encoded-dotdot", "/example.com/%2e%2e/%2e%2e/etc/@v/list", 400},
		{"encoded-slash", "/example.com/m/@v/..%2f..%2fx.info", 400},
		{"nul", "/example.com/m%00/@v/list", 400},
		{"bad-bang", "/github.com/!!x/y/@v/list", 400},
		{"upper-case", "/github.com/Azure/y/@v/list", 400},
		{"non-canonical-zip", "/example.com/m/@v/v1.0.zip", 400},
		{"non-canonical-mod", "/example.com/m/@v/v1.0.0+build.mod", 400},
		{"major-mismatch", "/example.com/m/@v/v2.0.0.mod", 400},
		{"not-protocol", "/etc/passwd", 404},
		{"sumdb-unknown-db", "/sumdb/evil.example/latest", 404},
		{"sumdb-bad-tile", "/sumdb/sum.golang.org/tile/99/0/x/../../etc", 400},
		{"sumdb-bad-lookup", "/sumdb/sum.golang.org/lookup/..%2f..@v1", 400},
		{"sumdb-unknown-path", "/sumdb/sum.golang.org/etc/passwd", 404},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp, body := get(t, "GET", ts.URL+tt.path)
			if resp.StatusCode != tt.status {
				t.Errorf("status %d, want %d (%q)", resp.StatusCode, tt.status, body)
			}
			if strings.Count(body, "\n") != 1 || !strings.HasSuffix(body, "\n") || len(body) > 300 {
				t.Errorf("body %q: want one short line", body)
			}
		})
	}
	if n := up.hits.Load(); n != 0 {
		t.Errorf("upstream saw %d requests for invalid input", n)
	}
	assertNoObjects(t, dir)
}

// The checksum database is proxied and cached: a real signed database
// (sumdbtest) behind the upstream, its answers checked before they are cached,
// and every cached answer served again without asking the upstream.
func TestSumDBProxy(t *testing.T) {
	t.Parallel()
	up := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, up, "sum.mod.test")
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = up.URL
	cfg.Auth.Anonymous = true
	cfg.Upstream.Retries = 0
	cfg.SumDB.Verify = false
	cfg.SumDB.Names = []string{db.Name()}
	cfg.SumDB.Key = db.Key()
	s, err := app.NewServer(app.ServerOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	base := ts.URL + "/sumdb/" + db.Name() + "/"

	resp, latest := get(t, "GET", base+"latest")
	if resp.StatusCode != 200 || !strings.HasPrefix(latest, "go.sum database tree\n") {
		t.Fatalf("latest: %d %q", resp.StatusCode, latest)
	}
	size := strings.Split(latest, "\n")[1]
	paths := []string{"latest", "lookup/" + proxytest.HelloPath + "@v1.1.0", "tile/8/0/000.p/" + size}
	bodies := map[string]string{}
	for _, p := range paths {
		resp, body := get(t, "GET", base+p)
		if resp.StatusCode != 200 {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
		bodies[p] = body
	}
	if !strings.Contains(bodies[paths[1]], proxytest.HelloPath+" v1.1.0 h1:") {
		t.Errorf("lookup: %q", bodies[paths[1]])
	}
	if resp, _ := get(t, "GET", base+"supported"); resp.StatusCode != 200 {
		t.Errorf("supported: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", ts.URL+"/sumdb/other.example/supported"); resp.StatusCode != 404 {
		t.Errorf("supported for unconfigured db: %d, want 404", resp.StatusCode)
	}
	up.ResetRequests()
	for _, p := range paths {
		if _, body := get(t, "GET", base+p); body != bodies[p] {
			t.Errorf("%s changed on the second read", p)
		}
	}
	if n := len(up.Requests()); n != 0 {
		t.Errorf("cached sumdb objects refetched: %d extra upstream requests %v", n, up.Paths())
	}
}

func TestHealthAndMetrics(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, map[string]string{"example.com/m/@v/list": "v1.0.0\n"})
	ts, _ := newTestServer(t, up.URL)
	if resp, body := get(t, "GET", ts.URL+"/healthz"); resp.StatusCode != 200 || body != "ok\n" {
		t.Errorf("healthz: %d %q", resp.StatusCode, body)
	}
	if resp, body := get(t, "GET", ts.URL+"/readyz"); resp.StatusCode != 200 || !strings.Contains(body, "storage: ok") {
		t.Errorf("readyz: %d %q", resp.StatusCode, body)
	}
	get(t, "GET", ts.URL+"/example.com/m/@v/list")
	get(t, "GET", ts.URL+"/example.com/m/@v/list")
	_, body := get(t, "GET", ts.URL+"/metrics")
	for _, want := range []string{
		`modgate_http_requests_total{code="200",endpoint="list"} 2`,
		`modgate_cache_lookups_total{result="hit"} 1`,
		`modgate_cache_lookups_total{result="miss"} 1`,
		`modgate_upstream_fetches_total{result="ok",upstream="` + up.URL + `"} 1`,
		`modgate_upstream_inflight_fetches 0`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	resp, _ := get(t, "GET", ts.URL+"/healthz", "X-Request-Id", "abc-123")
	if resp.Header.Get("X-Request-Id") != "abc-123" {
		t.Errorf("request id not echoed: %q", resp.Header.Get("X-Request-Id"))
	}
	resp, _ = get(t, "GET", ts.URL+"/healthz", "X-Request-Id", strings.Repeat("x", 100))
	if id := resp.Header.Get("X-Request-Id"); id == "" || len(id) > 64 {
		t.Errorf("malformed request id accepted: %q", id)
	}
}

func assertNoObjects(t *testing.T, dir string) {
	t.Helper()
	time.Sleep(20 * time.Millisecond) // let any background fill finish
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			t.Errorf("unexpected object in cache: %s", strings.TrimPrefix(p, dir))
		}
		return nil
	})
}

func makeZip(t *testing.T, name, content string) string {
	t.Helper()
	var buf bytes.Buffer
	zw := newZipWriter(&buf)
	w, err := zw.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, content)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

var _ = os.Getenv

// TestAccessLogLine: one flat JSON line per request with the request's fields
// (the attributes reach slog as one inlined group).
func TestAccessLogLine(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, map[string]string{"example.com/m/@v/v1.0.0.mod": "module example.com/m\n"})
	var logs syncBuffer
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = up.URL
	cfg.Auth.Anonymous = true
	cfg.Upstream.Retries = 0
	cfg.SumDB.Verify = false
	s, err := app.NewServer(app.ServerOptions{Config: cfg, Logger: slog.New(slog.NewJSONHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(s.Handler())
	t.Cleanup(ts.Close)
	resp, _ := get(t, http.MethodGet, ts.URL+"/example.com/m/@v/v1.0.0.mod", "X-Request-Id", "req-1", "User-Agent", "ua/1")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("X-Request-Id") != "req-1" {
		t.Fatalf("GET: %d, X-Request-Id %q", resp.StatusCode, resp.Header.Get("X-Request-Id"))
	}
	var line map[string]any
	for l := range strings.Lines(logs.String()) {
		if strings.Contains(l, `"msg":"request"`) {
			if err := json.Unmarshal([]byte(l), &line); err != nil {
				t.Fatalf("access log line %q: %v", l, err)
			}
		}
	}
	want := map[string]any{
		"request_id": "req-1", "method": "GET", "path": "/example.com/m/@v/v1.0.0.mod", "status": float64(200),
		"endpoint": "mod", "subject": "anonymous", "module": "example.com/m", "version": "v1.0.0",
		"cache": "miss", "user_agent": "ua/1",
	}
	for k, v := range want {
		if line[k] != v {
			t.Errorf("access log %s = %v, want %v (line %v)", k, line[k], v, line)
		}
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test to share.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}
