package server

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"

	modzip "golang.org/x/mod/zip"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
)

// Size limits for upstream objects. The go command itself refuses larger .mod and
// .zip files (golang.org/x/mod/zip), so anything bigger is an upstream fault.
const (
	maxInfoSize = 64 << 10
	maxListSize = 16 << 20
	maxModSize  = modzip.MaxGoMod
	maxZipSize  = modzip.MaxZipFile
)

func (s *Server) handleModule(w http.ResponseWriter, r *http.Request) {
	if rec := recorderOf(w); rec != nil {
		rec.endpoint = "module"
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		s.writeError(w, r, derrors.New(derrors.MethodNotAllowed, "method %s not allowed", r.Method))
		return
	}
	req, err := goproxy.ParseRequest(r.URL.EscapedPath())
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	if rec := recorderOf(w); rec != nil {
		rec.endpoint = req.Kind.String()
	}
	if s.isPrivate(req.Module) {
		// Versions published into modgate come first (they shadow git tags of the
		// same version); then the private git routes.
		if s.servePublished(w, r, req) {
			return
		}
	}
	if s.isPrivate(req.Module) && !s.servesPrivate(req.Module) {
		// Never ask a public mirror about a private path: the request itself would
		// leak the company's module names. Private sources come from config.
		s.writeError(w, r, derrors.New(derrors.NotFound, "not found: %s is a private module path and no private source serves it", req.Module))
		return
	}
	if rec := recorderOf(w); rec != nil {
		rec.module, rec.version = req.Module, req.Version
	}
	if err := s.authorizeModule(w, r, req); err != nil {
		s.writeError(w, r, err)
		return
	}
	switch req.Kind {
	case goproxy.KindList:
		s.serveFilteredList(w, r, req)
		return
	case goproxy.KindLatest:
		s.serveAllowedLatest(w, r, req)
		return
	}
	entry, err := s.cache.Get(r.Context(), s.moduleSpec(req))
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer entry.Close()
	s.serveEntry(w, r, entry, req.Kind.ContentType(), req.Immutable())
}

// moduleSpec says how the object a request names is fetched, checked and cached.
func (s *Server) moduleSpec(req goproxy.Request) cache.Spec {
	path := req.Path()
	spec := cache.Spec{
		Key:       "mod/" + path,
		Immutable: req.Immutable(),
		TTL:       s.cfg.Cache.ListTTL.D(),
	}
	switch req.Kind {
	case goproxy.KindList:
		spec.MaxSize = maxListSize
	case goproxy.KindLatest:
		spec.MaxSize = maxInfoSize
		spec.Check = checkInfo("")
	case goproxy.KindInfo:
		spec.MaxSize = maxInfoSize
		if req.IsQuery() {
			spec.Check = checkInfo("")
		} else {
			spec.Check = checkInfo(req.Version)
		}
	case goproxy.KindMod:
		spec.MaxSize = maxModSize
	case goproxy.KindZip:
		spec.MaxSize = maxZipSize
		spec.Stream = true
		spec.Check = checkZip
	}
	if s.isPrivate(req.Module) {
		return s.privateSpec(req, spec) // private.go: never the public chain
	}
	if spec.Stream {
		spec.Fetch = s.upstreamFetch(path, 0)
	} else {
		spec.Fetch = s.upstreamFetch(path, spec.MaxSize)
	}
	return s.verified(req, spec) // verify.go
}

func (s *Server) upstreamFetch(path string, buffer int64) func(context.Context) (*cache.Fetched, error) {
	return func(ctx context.Context) (*cache.Fetched, error) {
		resp, err := s.chain.Fetch(ctx, path, buffer)
		if err != nil {
			return nil, err
		}
		return &cache.Fetched{Body: resp.Body, Size: resp.Size, Source: resp.Source}, nil
	}
}

// checkInfo validates an .info document; for a canonical request its Version must
// be exactly the one asked for, or the go command would record a different version
// than the one it requested.
func checkInfo(want string) func(*os.File, int64) error {
	return func(f *os.File, size int64) error {
		data := make([]byte, size)
		if _, err := f.ReadAt(data, 0); err != nil {
			return fmt.Errorf("reading .info: %w", err)
		}
		info, err := goproxy.ParseInfo(data)
		if err != nil {
			return derrors.WithCause(derrors.BadUpstream, err, "upstream sent an invalid .info document")
		}
		if want != "" && info.Version != want {
			return derrors.New(derrors.BadUpstream, "upstream .info names version %q, not the requested %q", info.Version, want)
		}
		return nil
	}
}

// checkZip checks that the zip's central directory is readable. Content integrity
// is the checksum database's job; this catches truncated or non-zip bodies cheaply.
func checkZip(f *os.File, size int64) error {
	if _, err := zip.NewReader(io.NewSectionReader(f, 0, size), size); err != nil {
		return derrors.WithCause(derrors.BadUpstream, err, "upstream sent a corrupt module zip")
	}
	return nil
}

// serveEntry writes a cache entry: stored objects through http.ServeContent
// (conditional requests, byte ranges), in-flight ones as a stream.
func (s *Server) serveEntry(w http.ResponseWriter, r *http.Request, e *cache.Entry, contentType string, immutable bool) {
	if rec := recorderOf(w); rec != nil {
		rec.cache, rec.source = e.Result, e.Source
	}
	h := w.Header()
	h.Set("Content-Type", contentType)
	h.Set("X-Content-Type-Options", "nosniff")
	if immutable {
		h.Set("Cache-Control", "private, max-age=31536000, immutable")
	} else {
		h.Set("Cache-Control", "private, max-age=60")
	}
	if e.Object != nil {
		h.Set("ETag", fmt.Sprintf(`"%x-%x"`, e.Size, e.ModTime.UnixNano()))
		http.ServeContent(w, r, "", e.ModTime, e.Object)
		return
	}
	if e.Size >= 0 {
		h.Set("Content-Length", strconv.FormatInt(e.Size, 10))
	}
	h.Set("Last-Modified", e.ModTime.UTC().Format(http.TimeFormat))
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	buf := make([]byte, 64<<10)
	if _, err := io.CopyBuffer(struct{ io.Writer }{w}, e.Stream, buf); err != nil {
		if rec := recorderOf(w); rec != nil {
			rec.err = err
		}
		// The status line is gone; the only honest signal left is to break the
		// connection so the client sees a failed transfer, not a short object.
		panic(http.ErrAbortHandler)
	}
}
