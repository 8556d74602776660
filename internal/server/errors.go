package server

import (
	"errors"
	"fmt"
	"net/http"

	"github.com/modgate/modgate/internal/derrors"
)

// writeError is the one place errors become HTTP responses: the status from the
// error's kind, one plain-text line the go command prints as "server response:",
// and the full cause in the log.
func (s *Server) writeError(w http.ResponseWriter, r *http.Request, err error) {
	status := derrors.Status(err)
	msg := derrors.PublicMessage(err)
	if rec := recorderOf(w); rec != nil {
		rec.err = err
	}
	h := w.Header()
	h.Del("Content-Length")
	h.Del("ETag")
	h.Del("Last-Modified")
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	if status == http.StatusTooManyRequests && h.Get("Retry-After") == "" {
		h.Set("Retry-After", "10")
	}
	if status == http.StatusNotFound || status == http.StatusGone {
		// Short, so a module published a moment later is seen soon.
		h.Set("Cache-Control", "private, max-age=60")
	} else {
		h.Set("Cache-Control", "no-store")
	}
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		fmt.Fprintln(w, msg)
	}
}

func derrorsIsNotFound(err error) bool { return errors.Is(err, derrors.NotFound) }
