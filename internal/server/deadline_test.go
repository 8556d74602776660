package server_test

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/config"
)

// bigZip is a module zip of n incompressible bytes, large enough that it cannot
// fit in the kernel's socket buffers between the server and a client that does
// not read.
func bigZip(t *testing.T, n int) string {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateHeader(&zip.FileHeader{Name: "example.com/big@v1.0.0/data.bin", Method: zip.Store})
	if err != nil {
		t.Fatal(err)
	}
	data := make([]byte, n)
	rand.Read(data)
	w.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.String()
}

// connWatcher records when the server closes each connection, by remote address.
type connWatcher struct {
	mu     sync.Mutex
	closed map[string]chan struct{}
}

func (c *connWatcher) ch(addr string) chan struct{} {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed == nil {
		c.closed = map[string]chan struct{}{}
	}
	if c.closed[addr] == nil {
		c.closed[addr] = make(chan struct{})
	}
	return c.closed[addr]
}

func (c *connWatcher) state(conn net.Conn, s http.ConnState) {
	if s == http.StateClosed || s == http.StateHijacked {
		close(c.ch(conn.RemoteAddr().String()))
	}
}

func newDeadlineServer(t *testing.T, cfg config.Config) (*httptest.Server, *connWatcher) {
	t.Helper()
	s, err := app.NewServer(app.ServerOptions{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	w := &connWatcher{}
	ts := httptest.NewUnstartedServer(s.Handler())
	ts.Config.ConnState = w.state
	ts.Start()
	t.Cleanup(ts.Close)
	return ts, w
}

func deadlineConfig(t *testing.T, upstreamURL string) config.Config {
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = upstreamURL
	cfg.Auth.Anonymous = true
	cfg.Upstream.Retries = 0
	cfg.SumDB.Verify = false
	return cfg
}

// dialZeroWindow connects with a tiny receive buffer (set before connect, so the
// advertised window stays small) and never reads.
func dialZeroWindow(t *testing.T, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	conn, err := d.DialContext(context.Background(), "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

// A client that requests a large zip and stops reading is cut off within the
// progress deadline, whether the zip is streamed from upstream or served from the
// cache, while another client downloads the same zip normally meanwhile.
func TestSlowReaderCutOff(t *testing.T) {
	t.Parallel()
	const progress = time.Second
	zipData := bigZip(t, 24<<20)
	up := newFakeUpstream(t, map[string]string{"example.com/big/@v/v1.0.0.zip": zipData})
	cfg := deadlineConfig(t, up.URL)
	cfg.Server.WriteProgressTimeout = config.Duration(progress)
	ts, watch := newDeadlineServer(t, cfg)
	addr := strings.TrimPrefix(ts.URL, "http://")

	for _, phase := range []string{"streamed", "cached"} {
		conn := dialZeroWindow(t, addr)
		closed := watch.ch(conn.LocalAddr().String())
		start := time.Now()
		io.WriteString(conn, "GET /example.com/big/@v/v1.0.0.zip HTTP/1.1\r\nHost: modgate\r\n\r\n")

		// Another client is served in full meanwhile.
		resp, body := get(t, "GET", ts.URL+"/example.com/big/@v/v1.0.0.zip")
		if resp.StatusCode != 200 || body != zipData {
			t.Fatalf("%s: concurrent client got %d, %d bytes; want 200, %d bytes", phase, resp.StatusCode, len(body), len(zipData))
		}

		select {
		case <-closed:
			t.Logf("%s: stalled connection closed after %v", phase, time.Since(start).Round(10*time.Millisecond))
		case <-time.After(progress + 20*time.Second):
			t.Fatalf("%s: connection of a client that does not read still open after %v", phase, time.Since(start))
		}
		// What the client can still read is what was in flight: never the whole zip.
		conn.SetReadDeadline(time.Now().Add(10 * time.Second))
		n, _ := io.Copy(io.Discard, conn)
		if n >= int64(len(zipData)) {
			t.Errorf("%s: stalled client still received %d bytes, the whole zip", phase, n)
		}
	}
}

// With the deadlines off, the same client keeps its connection: the test above
// fails without the defence.
func TestSlowReaderWithoutDeadlineStaysOpen(t *testing.T) {
	t.Parallel()
	zipData := bigZip(t, 24<<20)
	up := newFakeUpstream(t, map[string]string{"example.com/big/@v/v1.0.0.zip": zipData})
	cfg := deadlineConfig(t, up.URL)
	cfg.Server.WriteProgressTimeout = 0
	cfg.Server.WriteTimeout = 0
	ts, watch := newDeadlineServer(t, cfg)
	conn := dialZeroWindow(t, strings.TrimPrefix(ts.URL, "http://"))
	closed := watch.ch(conn.LocalAddr().String())
	io.WriteString(conn, "GET /example.com/big/@v/v1.0.0.zip HTTP/1.1\r\nHost: modgate\r\n\r\n")
	select {
	case <-closed:
		t.Fatal("connection closed although no write deadline is configured")
	case <-time.After(3 * time.Second):
	}
	conn.Close()
}

func TestMetricsToken(t *testing.T) {
	t.Parallel()
	up := newFakeUpstream(t, nil)
	cfg := deadlineConfig(t, up.URL)
	tok := filepath.Join(t.TempDir(), "metrics-token")
	os.WriteFile(tok, []byte("s3cret-metrics\n"), 0o600)
	cfg.Server.MetricsTokenFile = tok
	ts, _ := newDeadlineServer(t, cfg)

	for _, hdr := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret-metrics"}} {
		resp, body := get(t, "GET", ts.URL+"/metrics", hdr...)
		if resp.StatusCode != 401 || strings.Contains(body, "modgate_") {
			t.Errorf("/metrics with %q: %d, want 401 and no metrics", hdr, resp.StatusCode)
		}
	}
	resp, body := get(t, "GET", ts.URL+"/metrics", "Authorization", "Bearer s3cret-metrics")
	if resp.StatusCode != 200 || !strings.Contains(body, "modgate_http_requests_total") {
		t.Errorf("/metrics with the token: %d", resp.StatusCode)
	}
	if resp, _ := get(t, "GET", ts.URL+"/healthz"); resp.StatusCode != 200 {
		t.Errorf("/healthz needs no token: %d", resp.StatusCode)
	}

	cfg.Server.MetricsTokenFile = filepath.Join(t.TempDir(), "missing")
	if _, err := app.NewServer(app.ServerOptions{Config: cfg}); err == nil {
		t.Error("a missing metrics token file was accepted")
	}
}
