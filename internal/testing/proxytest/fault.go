package proxytest

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// A Fault changes how the Server answers. The zero Fault changes nothing; set
// the fields of the faults wanted (they combine: a Delay with a Drip, say).
type Fault struct {
	// Status, when non-zero, answers with this status (404, 410, 429, 500, ...)
	// and a one-line text body instead of the real response.
	Status int

	// Delay waits this long before sending the status line and headers.
	Delay time.Duration

	// DripBytes and DripInterval, when both set, send the body DripBytes at a
	// time, flushed, with DripInterval between writes.
	DripBytes    int
	DripInterval time.Duration

	// Truncate ends the body after TruncateAfter bytes. With KeepLength the full
	// Content-Length is still announced, so the client sees an unexpected EOF;
	// without it no Content-Length is sent and the short body ends cleanly (only
	// a hash check can tell).
	Truncate      bool
	TruncateAfter int
	KeepLength    bool

	// Reset sends the headers (with the full Content-Length) and the first
	// ResetAfter bytes of the body, then resets the TCP connection.
	Reset      bool
	ResetAfter int

	// Corrupt flips the bits of the body byte at CorruptOffset (clamped to the
	// last byte).
	Corrupt       bool
	CorruptOffset int

	// InfoVersion, when set, replaces the Version field of .info and @latest
	// responses.
	InfoVersion string

	// Times limits the fault to the next Times requests it matches; 0 means
	// until cleared. A fault used up is removed.
	Times int
}

// SetFault applies f to requests for the exact path (case-encoded, as built by
// ZipPath and friends, or "/sumdb/<name>/..."), replacing any fault there. A path
// fault takes precedence over the global one.
func (s *Server) SetFault(path string, f Fault) {
	if path == "" {
		path = "/"
	}
	s.setFault(path, f)
}

// SetGlobalFault applies f to every request without a path fault.
func (s *Server) SetGlobalFault(f Fault) { s.setFault("", f) }

func (s *Server) setFault(key string, f Fault) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.faults[key] = &f
}

// ClearFaults removes every path and global fault (not the gates).
func (s *Server) ClearFaults() {
	s.mu.Lock()
	defer s.mu.Unlock()
	clear(s.faults)
}

// alter applies the body-changing faults to a successful response body.
func (f Fault) alter(path string, body []byte) []byte {
	if f.InfoVersion != "" && (strings.HasSuffix(path, ".info") || strings.HasSuffix(path, "/@latest")) {
		var info Info
		if err := json.Unmarshal(body, &info); err == nil {
			info.Version = f.InfoVersion
			if b, err := json.Marshal(info); err == nil {
				body = b
			}
		}
	}
	if f.Corrupt && len(body) > 0 {
		body = append([]byte(nil), body...) // the served bytes are shared
		off := min(max(f.CorruptOffset, 0), len(body)-1)
		body[off] ^= 0xff
	}
	return body
}

// deliver writes resp, applying the transfer faults and the gate.
func (s *Server) deliver(w http.ResponseWriter, r *http.Request, resp response, f Fault, gate *Gate) {
	for k, v := range resp.header {
		w.Header()[k] = v
	}
	body := resp.body
	if f.Reset {
		s.reset(w, resp, min(max(f.ResetAfter, 0), len(body)))
		return
	}
	if f.Truncate {
		n := min(max(f.TruncateAfter, 0), len(body))
		if f.KeepLength {
			// net/http closes the connection when a handler writes less than the
			// Content-Length it announced.
			w.Header().Set("Content-Length", strconv.Itoa(len(body)))
		} else {
			w.Header().Del("Content-Length")
		}
		body = body[:n]
	} else {
		w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	}
	w.WriteHeader(resp.status)
	if r.Method == http.MethodHead {
		return
	}
	rc := http.NewResponseController(w)
	if gate != nil {
		n := min(gate.after, len(body))
		if !s.write(w, rc, r, body[:n], f) {
			return
		}
		body = body[n:]
		if !gate.hold(r, s.closing) {
			return
		}
	}
	s.write(w, rc, r, body, f)
}

// write sends p, dripping it if the fault says so; it reports whether the
// client is still there.
func (s *Server) write(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, p []byte, f Fault) bool {
	chunk := len(p)
	drip := f.DripBytes > 0 && f.DripInterval > 0
	if drip {
		chunk = f.DripBytes
	}
	for len(p) > 0 {
		n := min(chunk, len(p))
		if _, err := w.Write(p[:n]); err != nil {
			return false
		}
		p = p[n:]
		if drip {
			if err := rc.Flush(); err != nil {
				return false
			}
			if len(p) > 0 && !s.sleep(r, f.DripInterval) {
				return false
			}
		}
	}
	return rc.Flush() == nil
}

// reset writes the status line, headers and the first n body bytes by hand on
// the hijacked connection, then closes it with SO_LINGER 0 so the peer gets a
// TCP RST mid-body.
func (s *Server) reset(w http.ResponseWriter, resp response, n int) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		http.Error(w, "proxytest: cannot hijack: "+err.Error(), http.StatusInternalServerError)
		return
	}
	defer conn.Close()
	fmt.Fprintf(brw, "HTTP/1.1 %d %s\r\n", resp.status, http.StatusText(resp.status))
	w.Header().Set("Content-Length", strconv.Itoa(len(resp.body)))
	w.Header().Write(brw)
	brw.WriteString("\r\n")
	brw.Write(resp.body[:n])
	brw.Flush()
	if tc, ok := conn.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}

// sleep waits d, or until the client goes away or the Server closes; it reports
// whether the full wait happened.
func (s *Server) sleep(r *http.Request, d time.Duration) bool {
	timer := time.NewTimer(d)
	defer timer.Stop()
	select {
	case <-timer.C:
		return true
	case <-r.Context().Done():
	case <-s.closing:
	}
	return false
}

// A Gate holds responses for one path in flight: each sends its status,
// headers and first bytes, then waits until Release. Tests use it to kill
// modgate mid-transfer or to pile up concurrent requests for one object.
type Gate struct {
	after    int
	released chan struct{}
	release  sync.Once
	held     chan struct{}
	heldOnce sync.Once
	count    atomic.Int64
}

// Gate installs a gate on the exact request path, replacing (and releasing) any
// earlier one. Responses for the path send their headers and first `after`
// body bytes, then block until Release, the client disconnects, or the test
// ends.
func (s *Server) Gate(path string, after int) *Gate {
	g := &Gate{after: after, released: make(chan struct{}), held: make(chan struct{})}
	s.mu.Lock()
	old := s.gates[path]
	s.gates[path] = g
	s.mu.Unlock()
	if old != nil {
		old.Release()
	}
	return g
}

// Release lets every held response, and every later one, through. It may be
// called more than once.
func (g *Gate) Release() { g.release.Do(func() { close(g.released) }) }

// Held is closed when the first response reaches the gate.
func (g *Gate) Held() <-chan struct{} { return g.held }

// Count returns how many responses have reached the gate (held or, after
// Release, passed straight through).
func (g *Gate) Count() int { return int(g.count.Load()) }

func (g *Gate) hold(r *http.Request, closing <-chan struct{}) bool {
	g.count.Add(1)
	g.heldOnce.Do(func() { close(g.held) })
	select {
	case <-g.released:
		return true
	case <-r.Context().Done():
	case <-closing:
	}
	return false
}
