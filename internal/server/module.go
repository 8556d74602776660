package server

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/route"
)

// handleModule serves the GOPROXY protocol: parse, decide (gate), then answer
// from the route's sources.
func (s *Server) handleModule(w http.ResponseWriter, r *http.Request) {
	rec := recorderOf(w)
	if rec == nil {
		rec = &recorder{} // direct use without withLogging (never in production)
	}
	rec.endpoint = "module"
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
	rec.endpoint, rec.module = req.Kind.String(), req.Module
	version := ""
	if req.Kind == goproxy.KindInfo || req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip {
		version = req.Version
		rec.version = version
	}
	gr := s.gateRequest(r, policy.Action(req.Kind.String()), req.Module, version)
	gr.EscapedModule, gr.Query = req.EscapedModule, req.IsQuery()
	rt, ok := s.authorize(w, r, gr)
	if !ok {
		return
	}
	ctx := r.Context()
	switch req.Kind {
	case goproxy.KindList:
		versions, err := s.src.Versions(ctx, rt, req.Module, req.EscapedModule)
		if err == nil {
			versions, err = s.gate.FilterVersions(ctx, gr, rt, versions)
		}
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		writeVersionList(w, r, versions)
		return
	case goproxy.KindLatest:
		info, err := s.src.Latest(ctx, rt, req.Module, req.EscapedModule)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		v, d, err := s.gate.Latest(ctx, gr, rt, info, func() ([]string, error) {
			return s.src.Versions(ctx, rt, req.Module, req.EscapedModule)
		})
		recordDecision(rec, d)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		rec.version = v
		// @latest answers with the .info of the version chosen.
		req.Kind, req.Version, req.EscapedVersion = goproxy.KindInfo, v, escapeVersion(v)
		e, err := s.src.Get(ctx, rt, req)
		if err != nil {
			s.writeError(w, r, err)
			return
		}
		defer e.Close()
		s.serveEntry(w, r, e, goproxy.KindLatest.ContentType(), false)
		return
	}
	e, err := s.src.Get(ctx, rt, req)
	if err != nil {
		s.writeError(w, r, err)
		return
	}
	defer e.Close()
	s.serveEntry(w, r, e, req.Kind.ContentType(), req.Immutable())
	if e.Result == "miss" && s.src.PrefetchesZip(rt, req) {
		s.prefetchZip(ctx, gr, rt, req)
	}
}

// prefetchZip has the zip of a version whose .info was just fetched upstream
// fetched ahead of its request (source.Sources.PrefetchZip), when the caller
// may pull that zip: modgate fetches nothing on a caller's behalf that the
// policy would not give them. The decision is not audited; the zip request,
// when it comes, is.
func (s *Server) prefetchZip(ctx context.Context, gr gate.Request, rt route.Route, req goproxy.Request) {
	gr.Action = policy.ActionZip
	if _, _, err := s.gate.Authorize(ctx, gr); err != nil {
		return
	}
	s.src.PrefetchZip(rt, req)
}

// writeVersionList answers @v/list with versions, one per line.
func writeVersionList(w http.ResponseWriter, r *http.Request, versions []string) {
	body := strings.Join(versions, "\n")
	if body != "" {
		body += "\n"
	}
	h := w.Header()
	h.Set("Content-Type", goproxy.KindList.ContentType())
	h.Set("Cache-Control", "private, max-age=60")
	h.Set("Content-Length", fmt.Sprint(len(body)))
	h.Set("X-Content-Type-Options", "nosniff")
	if r.Method != http.MethodHead {
		io.WriteString(w, body)
	}
}

// serveEntry writes a cache entry: stored objects through http.ServeContent
// (conditional requests, byte ranges), in-flight ones as a stream.
func (s *Server) serveEntry(w http.ResponseWriter, r *http.Request, e *cache.Entry, contentType string, immutable bool) {
	w = s.progressWriter(w)
	if rec := recorderOf(w); rec != nil {
		rec.cache, rec.source = e.Result, e.Source
	}
	h := w.Header()
	setContentType(h, contentType)
	setShared(h, "X-Content-Type-Options", hvNosniff)
	if immutable {
		setShared(h, "Cache-Control", hvImmutable)
	} else {
		setShared(h, "Cache-Control", hvShortLived)
	}
	if e.Object != nil {
		if e.Size >= 0 && !conditionalOrRange(r) {
			serveWhole(w, r, e)
			return
		}
		h.Set("ETag", etag(e.Size, e.ModTime.UnixNano()))
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

// conditionalOrRange reports whether r carries a header that makes
// http.ServeContent answer other than 200 with the whole object: a range or a
// precondition (RFC 9110 §13, §14.2).
func conditionalOrRange(r *http.Request) bool {
	h := r.Header
	return len(h["Range"]) > 0 || len(h["If-Match"]) > 0 || len(h["If-None-Match"]) > 0 ||
		len(h["If-Modified-Since"]) > 0 || len(h["If-Unmodified-Since"]) > 0
}

// serveWhole answers a GET or HEAD of a stored object that has no range or
// precondition — every request the go command makes — with what
// http.ServeContent would write for it: 200, ETag, Last-Modified, Accept-Ranges,
// Content-Length and the body. The size is the entry's (ServeContent finds it
// with two seeks, two system calls), and the three computed header values are
// formatted into one string, their value slices taken from the request's
// recorder: one allocation where ServeContent and Header.Set spend seven.
// Requests with a range or a precondition still go to ServeContent.
func serveWhole(w http.ResponseWriter, r *http.Request, e *cache.Entry) {
	var b [96]byte
	buf := append(b[:0], '"') // the ETag, as etag() writes it
	buf = strconv.AppendInt(buf, e.Size, 16)
	buf = append(buf, '-')
	buf = strconv.AppendInt(buf, e.ModTime.UnixNano(), 16)
	buf = append(buf, '"')
	etagEnd := len(buf)
	buf = strconv.AppendInt(buf, e.Size, 10)
	lengthEnd := len(buf)
	buf = e.ModTime.UTC().AppendFormat(buf, http.TimeFormat)
	all := string(buf)

	var vals *[3]string
	if rec := recorderOf(w); rec != nil {
		vals = &rec.objectValues
	} else {
		vals = new([3]string)
	}
	vals[0], vals[1], vals[2] = all[:etagEnd], all[etagEnd:lengthEnd], all[lengthEnd:]
	h := w.Header()
	// Each slice is full (cap 1), so an Add after this copies it rather than
	// writing into the recorder's array.
	h["Etag"] = vals[0:1:1]
	h["Content-Length"] = vals[1:2:2]
	if !e.ModTime.IsZero() && !e.ModTime.Equal(time.Unix(0, 0)) {
		h["Last-Modified"] = vals[2:3:3]
	}
	setShared(h, "Accept-Ranges", hvBytes)
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		if b, ok := e.Object.(interface{ Bytes() []byte }); ok {
			w.Write(b.Bytes()) // kept in memory by the cache: one write, no copy
			return
		}
		io.CopyN(w, e.Object, e.Size)
	}
}
