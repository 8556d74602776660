package server

import (
	"crypto/subtle"
	"net/http"
	"strings"
	"time"
)

// Write deadlines against slow readers. Without them a client that stops reading
// (a zero TCP window) holds a goroutine and a socket for ever. Every response
// starts with a whole-response deadline (Settings.WriteTimeout); module objects,
// which may be large zips to slow but live clients, replace it with a progress
// deadline renewed before every write (Settings.WriteProgressTimeout), so a
// download may take as long as it needs as long as each chunk gets through.

// withWriteDeadline sets the whole-response write deadline. The deadline is set
// per request because net/http does not reset a connection's write deadline
// between keep-alive requests when its own WriteTimeout is unset.
func (s *Server) withWriteDeadline(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if dw := deadlinerOf(w); dw != nil {
			if d := s.set.WriteTimeout; d > 0 {
				dw.SetWriteDeadline(time.Now().Add(d))
			} else {
				dw.SetWriteDeadline(time.Time{})
			}
		}
		next.ServeHTTP(w, r)
	})
}

// progressWriter returns w with its write deadline moved to now plus the progress
// timeout before every write; w itself when the progress timeout is off.
func (s *Server) progressWriter(w http.ResponseWriter) http.ResponseWriter {
	d := s.set.WriteProgressTimeout
	if d <= 0 {
		return w
	}
	dw := deadlinerOf(w)
	if dw == nil {
		return w // nothing to set deadlines on (a test's recorder)
	}
	pw := &deadlineWriter{ResponseWriter: w, dw: dw, d: d}
	pw.extend()
	return pw
}

// writeDeadliner is what sets a response's write deadline: net/http's
// ResponseWriters for HTTP/1 and HTTP/2 implement it.
type writeDeadliner interface {
	SetWriteDeadline(time.Time) error
}

// deadlinerOf finds the writeDeadliner in w's chain of wrappers, as
// http.ResponseController does, or nil. It is looked up once per request
// rather than through a ResponseController, which costs an allocation each.
func deadlinerOf(w http.ResponseWriter) writeDeadliner {
	for {
		switch x := w.(type) {
		case writeDeadliner:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

// withWriteProgress gives routes whose answers may be long, or may come only after
// a long upload, the progress deadline instead of the whole-response one.
func (s *Server) withWriteProgress(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		next.ServeHTTP(s.progressWriter(w), r)
	})
}

type deadlineWriter struct {
	http.ResponseWriter
	dw writeDeadliner
	d  time.Duration
}

func (w *deadlineWriter) extend() { w.dw.SetWriteDeadline(time.Now().Add(w.d)) }

func (w *deadlineWriter) Write(p []byte) (int, error) {
	// Large writes are split so that each piece gets its own deadline: one
	// deadline for a 1 MiB write would bound the whole write, not its progress.
	const chunk = 64 << 10
	n := 0
	for len(p) > 0 {
		q := p
		if len(q) > chunk {
			q = q[:chunk]
		}
		w.extend()
		m, err := w.ResponseWriter.Write(q)
		n += m
		if err != nil {
			return n, err
		}
		p = p[m:]
	}
	return n, nil
}

func (w *deadlineWriter) Flush() {
	w.extend()
	http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// withMetricsToken requires the configured bearer token on /metrics.
func (s *Server) withMetricsToken(next http.Handler) http.Handler {
	if s.set.MetricsToken == "" {
		return next
	}
	want := []byte(s.set.MetricsToken)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(got), want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="modgate metrics"`)
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusUnauthorized)
			w.Write([]byte("metrics: bearer token required\n"))
			return
		}
		next.ServeHTTP(w, r)
	})
}
