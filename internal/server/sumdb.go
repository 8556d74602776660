package server

import (
	"net/http"
	"strings"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/source"
)

// handleSumDB proxies the checksum database protocol
// (https://go.dev/design/25530-sumdb#proxying-a-checksum-database): the go command
// asks $GOPROXY/sumdb/<name>/supported and, on 200, fetches lookup/, tile/ and
// latest through the proxy instead of contacting <name> directly. That is what lets
// `go` verify public modules where the checksum database host is unreachable.
func (s *Server) handleSumDB(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, r, derrors.New(derrors.MethodNotAllowed, "method %s not allowed", r.Method))
		return
	}
	rest := strings.TrimPrefix(r.URL.EscapedPath(), "/sumdb/")
	name, rest, _ := strings.Cut(rest, "/")
	if !s.sumdbs[name] {
		// 404 on "supported" tells the go command to contact the database directly.
		s.writeError(w, r, derrors.New(derrors.NotFound, "checksum database %q is not proxied here", printable(name)))
		return
	}
	if rest == "supported" {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Header().Set("Cache-Control", "private, max-age=3600")
		w.WriteHeader(http.StatusOK)
		return
	}
	p, err := source.ParseSumDBPath(name, rest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Tiles and tree heads name no module. A lookup does, and the gate decides
	// it like a pull of that module: a deny-listed module, or one the caller may
	// not pull, is not even looked up, and the refusal names the policy's reason.
	gr := s.gateRequest(r, policy.ActionSumDB, p.Module, p.Version)
	if p.Module != "" {
		if rec := recorderOf(w); rec != nil {
			rec.module, rec.version = p.Module, p.Version
		}
		gr.Lookup = true
		if gr.EscapedModule, err = module.EscapePath(p.Module); err != nil {
			s.writeError(w, r, derrors.WithCause(derrors.InvalidArgument, err, "invalid module path in lookup"))
			return
		}
	}
	if _, ok := s.authorize(w, r, gr); !ok {
		return
	}
	entry, err := s.src.SumDB(r.Context(), p)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer entry.Close()
	s.serveEntry(w, r, entry, p.ContentType, p.Immutable())
}

func printable(s string) string {
	if len(s) > 64 {
		s = s[:64] + "..."
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
