package server

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"syscall"
	"testing"
	"time"
)

// The whole-response deadline cuts off a client that stops reading on routes
// other than module objects; a client that reads gets the whole response.
func TestWholeResponseWriteDeadline(t *testing.T) {
	t.Parallel()
	body := bytes.Repeat([]byte("x"), 16<<20)
	s := &Server{set: Settings{WriteTimeout: 2 * time.Second}}
	h := s.withWriteDeadline(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write(body)
	}))
	closed := make(chan string, 4)
	ts := httptest.NewUnstartedServer(h)
	ts.Config.ConnState = func(c net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed <- c.RemoteAddr().String()
		}
	}
	ts.Start()
	defer ts.Close()

	d := net.Dialer{Control: func(_, _ string, c syscall.RawConn) error {
		var serr error
		c.Control(func(fd uintptr) { serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
		return serr
	}}
	conn, err := d.DialContext(context.Background(), "tcp", ts.Listener.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	io.WriteString(conn, "GET /metrics HTTP/1.1\r\nHost: modgate\r\n\r\n")
	start := time.Now()

	resp, err := http.Get(ts.URL + "/other") // a reading client: 16 MiB well within 2s on loopback
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if n != int64(len(body)) {
		t.Errorf("reading client got %d bytes, want %d", n, len(body))
	}

	timeout := time.After(20 * time.Second)
	for {
		select {
		case addr := <-closed:
			if addr == conn.LocalAddr().String() {
				t.Logf("stalled connection closed after %v", time.Since(start).Round(10*time.Millisecond))
				return
			}
		case <-timeout:
			t.Fatalf("connection of a client that does not read still open after %v", time.Since(start))
		}
	}
}
