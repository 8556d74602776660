package server

import (
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"

	"github.com/modgate/modgate/internal/identity"
)

// InProcessTransport returns a RoundTripper that serves module and checksum
// database requests with this server's own handlers, as id, with no network hop
// and no credentials. The scheduled sync inside `modgate serve` uses it, so every
// object it warms goes through policy, the cache, verification, the access log and
// the audit trail exactly as a client's request would.
func (s *Server) InProcessTransport(id *identity.Identity) http.RoundTripper {
	h := s.withRequest(s.withAuditGate(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec := recorderOf(w); rec != nil {
			rec.identity = id
		}
		if strings.HasPrefix(r.URL.EscapedPath(), "/sumdb/") {
			s.endpoint("sumdb", http.HandlerFunc(s.handleSumDB)).ServeHTTP(w, r)
			return
		}
		s.handleModule(w, r)
	})))
	return roundTripperFunc(func(r *http.Request) (*http.Response, error) {
		pr, pw := io.Pipe()
		w := &pipeResponse{header: make(http.Header), body: pw, started: make(chan struct{})}
		go func() {
			defer func() {
				if p := recover(); p != nil {
					// The handler aborted mid-body (an upstream failed): the reader
					// sees a failed transfer, never a short object.
					w.WriteHeader(http.StatusOK)
					pw.CloseWithError(fmt.Errorf("server: response aborted: %v", p))
					return
				}
				w.WriteHeader(http.StatusOK)
				pw.Close()
			}()
			h.ServeHTTP(w, r)
		}()
		select {
		case <-w.started:
		case <-r.Context().Done():
			pr.CloseWithError(r.Context().Err())
			return nil, r.Context().Err()
		}
		return &http.Response{
			Status:        fmt.Sprintf("%d %s", w.status, http.StatusText(w.status)),
			StatusCode:    w.status,
			Proto:         "HTTP/1.1",
			ProtoMajor:    1,
			ProtoMinor:    1,
			Header:        w.header.Clone(),
			Body:          pr,
			ContentLength: -1,
			Request:       r,
		}, nil
	})
}

// pipeResponse is an http.ResponseWriter whose body is read through a pipe, so a
// large zip streams to the in-process client instead of being held in memory.
type pipeResponse struct {
	header  http.Header
	body    *io.PipeWriter
	status  int
	once    sync.Once
	started chan struct{}
}

func (p *pipeResponse) Header() http.Header { return p.header }

func (p *pipeResponse) WriteHeader(code int) {
	p.once.Do(func() {
		p.status = code
		close(p.started)
	})
}

func (p *pipeResponse) Write(b []byte) (int, error) {
	p.WriteHeader(http.StatusOK)
	return p.body.Write(b)
}

type roundTripperFunc func(*http.Request) (*http.Response, error)

func (f roundTripperFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
