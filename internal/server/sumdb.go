package server

import (
	"net/http"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/policy"
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
	spec, contentType, modPath, err := s.sumdbSpec(name, rest)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	// Tiles and tree heads name no module; a lookup does, and is decided like a
	// pull of that module (a deny-listed module is not even looked up).
	if d, err := s.decide(w, r, s.input(r, policy.ActionSumDB, modPath, "")); err != nil || !d.Allow {
		if err == nil {
			err = d.Err()
		}
		s.writeError(w, r, err)
		return
	}
	entry, err := s.cache.Get(r.Context(), spec)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer entry.Close()
	s.serveEntry(w, r, entry, contentType, spec.Immutable)
}

// sumdbSpec validates a checksum database path and says how it is cached: full
// tiles and lookups never change once published; the signed tree head ("latest")
// and partial tiles grow with the log.
func (s *Server) sumdbSpec(name, rest string) (spec cache.Spec, contentType, modPath string, err error) {
	path := "sumdb/" + name + "/" + rest
	spec = cache.Spec{Key: path, Fetch: s.upstreamFetch(path, 1<<20), TTL: s.cfg.SumDB.LatestTTL.D(), MaxSize: 1 << 20}
	switch {
	case rest == "latest":
		return s.sumdbCheckedFetch(spec, name, rest, "", ""), "text/plain; charset=utf-8", "", nil
	case strings.HasPrefix(rest, "lookup/"):
		escMod, escVer, ok := strings.Cut(strings.TrimPrefix(rest, "lookup/"), "@")
		if !ok {
			return spec, "", "", derrors.New(derrors.InvalidArgument, "malformed checksum database lookup")
		}
		modPath, err = module.UnescapePath(escMod)
		if err != nil {
			return spec, "", "", derrors.WithCause(derrors.InvalidArgument, err, "invalid module path in lookup")
		}
		if s.isPrivate(modPath) {
			// The lookup would tell the checksum database the private path.
			return spec, "", "", derrors.New(derrors.NotFound, "not found: %s is a private module path; private modules are not in the checksum database (set GONOSUMDB)", modPath)
		}
		version, err := module.UnescapeVersion(escVer)
		if err != nil {
			return spec, "", "", derrors.WithCause(derrors.InvalidArgument, err, "invalid version in lookup")
		}
		spec.Immutable = true
		spec = s.sumdbCheckedFetch(spec, name, rest, modPath, version)
		return spec, "text/plain; charset=utf-8", modPath, nil
	case strings.HasPrefix(rest, "tile/"):
		t, err := tlog.ParseTilePath(rest)
		if err != nil {
			return spec, "", "", derrors.WithCause(derrors.InvalidArgument, err, "malformed checksum database tile path")
		}
		spec.Immutable = t.W == 1<<t.H
		return s.sumdbCheckedFetch(spec, name, rest, "", ""), "application/octet-stream", "", nil
	}
	return spec, "", "", derrors.New(derrors.NotFound, "unknown checksum database path")
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
