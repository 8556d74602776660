package server

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/modgate/modgate/internal/identity"
)

// requestKey carries a request's *recorder in its context.
type requestKey struct{}

// RequestID returns the request id carried by ctx.
func RequestID(ctx context.Context) string {
	if rec := requestOf(ctx); rec != nil {
		return rec.requestID
	}
	return ""
}

// requestOf returns the state of the request whose context is ctx, or nil outside
// withRequest.
func requestOf(ctx context.Context) *recorder {
	rec, _ := ctx.Value(requestKey{}).(*recorder)
	return rec
}

// callerOf returns the identity withIdentity established for r, or nil.
func callerOf(r *http.Request) *identity.Identity {
	if rec := requestOf(r.Context()); rec != nil {
		return rec.identity
	}
	return nil
}

// withRequest starts a request's one piece of state, the *recorder: it gives the
// request an id (a well-formed X-Request-Id from a trusted load balancer, else a
// new one, echoed in the response so a developer can quote it to the platform
// team), wraps the ResponseWriter to capture what the handler did, and puts the
// recorder in the context with the request's only WithContext. Later middleware
// and handlers fill in the recorder (identity, decision, module) instead of
// copying the request again. When the handler returns it writes one JSON
// access-log line, the request metrics and the audit event. A handler that aborts
// a response (panic(http.ErrAbortHandler), used to cut off a body whose upstream
// failed) is logged and then re-panicked so net/http resets the connection.
func (s *Server) withRequest(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		id := r.Header.Get("X-Request-Id")
		if !validRequestID(id) {
			var b [12]byte
			rand.Read(b[:])
			id = hex.EncodeToString(b[:])
		}
		rec := &recorder{ResponseWriter: w, endpoint: "other", requestID: id}
		rec.requestIDValue[0] = id
		// A full slice of the recorder's own array: no allocation, and an Add
		// copies it rather than writing into the array.
		w.Header()["X-Request-Id"] = rec.requestIDValue[:]
		r = r.WithContext(context.WithValue(r.Context(), requestKey{}, rec))
		aborted := false
		defer func() {
			p := recover()
			if p != nil {
				aborted = true
			}
			d := time.Since(start)
			s.logRequest(r, rec, d, aborted)
			s.recordAudit(r, rec, d, aborted)
			if p != nil {
				panic(p)
			}
		}()
		next.ServeHTTP(rec, r)
	})
}

func validRequestID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_' || c == '.') {
			return false
		}
	}
	return true
}

// recorder is the state of one request: what the middlewares and the handler
// learnt and did, for the access log, metrics and audit. withRequest makes one per
// request; it is both the ResponseWriter the handlers write to and the value in
// the request's context (requestOf).
type recorder struct {
	http.ResponseWriter
	requestID string
	// requestIDValue and objectValues back response header values that would
	// otherwise cost a slice each: X-Request-Id, and serveWhole's ETag,
	// Content-Length and Last-Modified.
	requestIDValue [1]string
	objectValues   [3]string
	status         int
	bytes          int64
	endpoint       string
	err            error  // the error written, if any
	cache          string // cache result: hit, miss, stale
	source         string // where the bytes came from
	identity       *identity.Identity
	// What the request was about and how policy answered, for logs and audit.
	module, version            string
	decisionID, policyRevision string
	denied                     bool
	// Publish API (published.go): what was attempted and with which bytes, for
	// audit. uploadBytes counts the request body read and uploadSHA256 is its
	// SHA-256 (hex), set for every upload however invalid; zipHash is the h1:
	// hash of the zip once validated (or of the deleted version); outcome is
	// "created", "identical" or "deleted" on success; reason is a delete's reason.
	action, outcome, zipHash, reason string
	uploadBytes                      int64
	uploadSHA256                     string
	// rateLimited: refused by the per-identity rate limit (ratelimit.go).
	rateLimited bool
	// logAttrs backs the access-log line's attributes (logRequest).
	logAttrs [20]slog.Attr
}

func (r *recorder) WriteHeader(code int) {
	if r.status == 0 {
		r.status = code
	}
	r.ResponseWriter.WriteHeader(code)
}

func (r *recorder) Write(p []byte) (int, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	n, err := r.ResponseWriter.Write(p)
	r.bytes += int64(n)
	return n, err
}

// ReadFrom keeps the underlying writer's sendfile path for plain-HTTP file bodies.
func (r *recorder) ReadFrom(src io.Reader) (int64, error) {
	if r.status == 0 {
		r.status = http.StatusOK
	}
	if rf, ok := r.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(src)
		r.bytes += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{r.ResponseWriter}, src)
	r.bytes += n
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (r *recorder) Unwrap() http.ResponseWriter { return r.ResponseWriter }

func recorderOf(w http.ResponseWriter) *recorder {
	for {
		switch x := w.(type) {
		case *recorder:
			return x
		case interface{ Unwrap() http.ResponseWriter }:
			w = x.Unwrap()
		default:
			return nil
		}
	}
}

// endpoint labels the request for metrics and logs.
func (s *Server) endpoint(name string, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rec := recorderOf(w); rec != nil {
			rec.endpoint = name
		}
		h.ServeHTTP(w, r)
	})
}

func (s *Server) logRequest(r *http.Request, rec *recorder, d time.Duration, aborted bool) {
	status := rec.status
	if status == 0 {
		status = http.StatusOK
	}
	code := strconv.Itoa(status)
	if aborted {
		code = "aborted"
	}
	s.m.Requests.WithLabelValues(rec.endpoint, code).Inc()
	s.m.RequestDuration.WithLabelValues(rec.endpoint).Observe(d.Seconds())
	s.m.BytesServed.WithLabelValues(rec.endpoint).Add(float64(rec.bytes))

	level := slog.LevelInfo
	if rec.endpoint == "health" || rec.endpoint == "metrics" {
		level = slog.LevelDebug
	}
	if status >= 500 || aborted {
		level = slog.LevelWarn
	}
	// The attributes go in the recorder's own array and reach the handler as
	// one group with an empty key, which handlers inline (the JSON line is
	// unchanged): a slice of a dozen and more attributes would cost one
	// allocation here and slog.Record another for those past its first five.
	attrs := append(rec.logAttrs[:0],
		slog.String("request_id", rec.requestID),
		slog.String("method", r.Method),
		slog.String("path", r.URL.EscapedPath()),
		slog.Int("status", status),
		slog.Int64("bytes", rec.bytes),
		slog.Float64("duration_ms", float64(d.Microseconds())/1000),
		slog.String("remote", r.RemoteAddr),
		slog.String("endpoint", rec.endpoint),
	)
	if rec.identity != nil {
		attrs = append(attrs, slog.String("subject", rec.identity.Subject), slog.String("auth", string(rec.identity.Method)))
	}
	if rec.module != "" {
		attrs = append(attrs, slog.String("module", rec.module))
		if rec.version != "" {
			attrs = append(attrs, slog.String("version", rec.version))
		}
	}
	if rec.decisionID != "" {
		attrs = append(attrs, slog.String("decision_id", rec.decisionID), slog.String("policy_revision", rec.policyRevision))
	}
	if rec.action != "" {
		attrs = append(attrs, slog.String("action", rec.action), slog.Int64("upload_bytes", rec.uploadBytes))
		if rec.uploadSHA256 != "" {
			attrs = append(attrs, slog.String("upload_sha256", rec.uploadSHA256))
		}
		if rec.zipHash != "" {
			attrs = append(attrs, slog.String("zip_hash", rec.zipHash))
		}
		if rec.outcome != "" {
			attrs = append(attrs, slog.String("outcome", rec.outcome))
		}
		if rec.reason != "" {
			attrs = append(attrs, slog.String("reason", rec.reason))
		}
	}
	if rec.cache != "" {
		attrs = append(attrs, slog.String("cache", rec.cache), slog.String("source", rec.source))
	}
	if aborted {
		attrs = append(attrs, slog.Bool("aborted", true))
	}
	if rec.err != nil {
		attrs = append(attrs, slog.String("error", rec.err.Error()))
	}
	attrs = append(attrs, slog.String("user_agent", r.UserAgent()))
	s.log.LogAttrs(r.Context(), level, "request", slog.Attr{Value: slog.GroupValue(attrs...)})
}
