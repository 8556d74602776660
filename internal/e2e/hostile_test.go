package e2e

import (
	"bufio"
	"fmt"
	"github.com/modgate/modgate/internal/app"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// startHTTPServer runs modgate behind its own *http.Server (s.HTTPServer: the
// timeouts and header limits production uses), not httptest's.
func startHTTPServer(t *testing.T, upstreamURL string, mutate func(*config.Config)) string {
	t.Helper()
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = upstreamURL
	cfg.Auth.Anonymous = true
	cfg.SumDB.Verify = false
	if mutate != nil {
		mutate(&cfg)
	}
	s, err := app.NewServer(app.ServerOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := s.HTTPServer(ln.Addr().String())
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// Requests a client controls byte for byte: each is refused with the right status
// and one printable line, and nothing reaches the upstream.
func TestHostileRequests(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	addr := startHTTPServer(t, upstream.URL, nil)

	tests := []struct {
		name       string
		raw        string // the request, sent verbatim
		wantStatus int
	}{
		{name: "fail/overlong-path", raw: "GET /" + strings.Repeat("a/", 4000) + "@v/list HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400},
		{name: "fail/overlong-header", raw: "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("b", 128<<10) + "\r\n\r\n", wantStatus: 431},
		{name: "fail/invalid-utf8-path", raw: "GET /mod.test/%ff%fe/@v/list HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400},
		{name: "fail/raw-invalid-utf8-path", raw: "GET /mod.test/\xff\xfe/@v/list HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400},
		{name: "fail/nul-in-path", raw: "GET /mod.test/hello%00/@v/list HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400},
		{name: "fail/traversal", raw: "GET /mod.test/%2e%2e/%2e%2e/etc/@v/list HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400},
		{name: "fail/control-chars-in-version", raw: "GET /mod.test/hello/@v/v1.0.0%0d%0aX-Injected:%20yes.info HTTP/1.1\r\nHost: x\r\n\r\n", wantStatus: 400},
		{name: "fail/overlong-request-id", raw: "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Request-Id: " + strings.Repeat("r", 1000) + "\r\n\r\n", wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			before := len(upstream.Paths())
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			if _, err := io.WriteString(conn, tt.raw); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("reading response: %v", err)
			}
			body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus {
				t.Fatalf("status %d %q, want %d", resp.StatusCode, body, tt.wantStatus)
			}
			msg := strings.TrimSpace(string(body))
			if !utf8.ValidString(msg) || strings.ContainsAny(msg, "\r\n\x00") || len(msg) > 1024 {
				t.Errorf("reason is not one short printable line: %q", msg)
			}
			if id := resp.Header.Get("X-Request-Id"); len(id) > 64 {
				t.Errorf("echoed an overlong request id (%d bytes)", len(id))
			}
			if resp.Header.Get("X-Injected") != "" {
				t.Error("header injection")
			}
			if n := len(upstream.Paths()); n != before && resp.StatusCode >= 400 {
				t.Errorf("a refused request reached the upstream: %v", upstream.Paths()[before:])
			}
		})
	}
}

// Slowloris: a client that sends its headers a byte at a time is cut off after
// server.read_header_timeout instead of holding a connection (and a goroutine)
// forever.
func TestSlowlorisIsCutOff(t *testing.T) {
	t.Parallel()
	addr := startHTTPServer(t, "off", func(c *config.Config) {
		c.Server.ReadHeaderTimeout = config.Duration(300 * time.Millisecond)
	})
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	start := time.Now()
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: x\r\n")
	closed := make(chan time.Duration, 1)
	go func() {
		buf := make([]byte, 1024)
		for {
			if _, err := conn.Read(buf); err != nil {
				closed <- time.Since(start)
				return
			}
		}
	}()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for i := 0; ; i++ {
		select {
		case d := <-closed:
			if d > 2*time.Second {
				t.Errorf("connection closed after %v, want about 300ms", d)
			}
			return
		case <-tick.C:
			io.WriteString(conn, "X-Slow-"+strconv.Itoa(i)+": 1\r\n")
		case <-time.After(5 * time.Second):
			t.Fatal("slowloris connection still open after 5s")
		}
	}
}

// Request floods: one identity beyond its budget gets 429 with Retry-After;
// the limit is per identity, so it does not spill over to others (unit-tested
// in internal/server: anonymous callers here share one loopback identity).
func TestRateLimitPerIdentity(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	mg := startVerifyingProxy(t, upstream.URL, db.Key(), t.TempDir(), func(c *config.Config) {
		c.Server.RateLimit = config.RateLimit{RequestsPerSecond: 1, Burst: 5}
	})
	url := mg.URL + proxytest.InfoPath(proxytest.HelloPath, "v1.0.0")
	var codes []int
	var retryAfter, body string
	for range 8 {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests {
			retryAfter, body = resp.Header.Get("Retry-After"), string(b)
		}
	}
	if fmt.Sprint(codes[:5]) != "[200 200 200 200 200]" || codes[7] != http.StatusTooManyRequests {
		t.Fatalf("statuses %v, want 5×200 (the burst) then 429", codes)
	}
	if n, err := strconv.Atoi(retryAfter); err != nil || n < 1 || n > 2 {
		t.Errorf("Retry-After %q, want 1 or 2 seconds", retryAfter)
	}
	if !strings.Contains(body, "too many requests: anonymous exceeds 1 requests per second") {
		t.Errorf("429 reason %q", body)
	}
	// Refusals are counted, not audited one by one (a flood must not cost an
	// fsync'd event per request); what was served is audited.
	served := 0
	for _, c := range codes {
		if c == 200 {
			served++
		}
	}
	if evs := mg.Audit.find("info", proxytest.HelloPath, "v1.0.0"); len(evs) != served {
		t.Errorf("%d audit events for %d served requests", len(evs), served)
	}
	if n, err := testutil.GatherAndCount(mg.Registry, "modgate_rate_limited_total"); err != nil || n != 1 {
		t.Errorf("modgate_rate_limited_total not reported: %v", err)
	}
	// /healthz and /metrics are not identity-limited (probes must not be starved).
	for range 10 {
		resp, err := http.Get(mg.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("/healthz rate-limited: %d", resp.StatusCode)
		}
	}
}

// An upstream answering a list with more than maxListSize (16 MiB) is refused,
// not buffered without bound.
func TestHugeUpstreamList(t *testing.T) {
	t.Parallel()
	huge := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/@v/list") {
			http.NotFound(w, r)
			return
		}
		line := []byte("v1.0.0-" + strings.Repeat("0", 60) + "\n")
		for n := 0; n < 17<<20; n += len(line) {
			if _, err := w.Write(line); err != nil {
				return
			}
		}
	}))
	t.Cleanup(huge.Close)
	mg, _ := startProxy(t, huge.URL)
	status, body := get(t, mg.URL+"/example.com/huge/@v/list")
	if status != http.StatusBadGateway || !strings.Contains(body, "exceeds the 16777216-byte limit") {
		t.Fatalf("huge list: %d %q, want 502 over the limit", status, body)
	}
}
