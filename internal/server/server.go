// Package server is modgate's HTTP wiring: routes, middleware (request ids,
// identity, rate limits, access log, audit) and the mapping from errors to
// statuses. Every request is decided by the authorization gate (internal/gate)
// and served from the module sources (internal/source); internal/app builds
// both and hands them in.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/gorilla/mux"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/source"
)

// Options are the server's dependencies, built by the composition root
// (internal/app). Zero values get sensible defaults where one exists.
type Options struct {
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Metrics are the collectors registered on Registry; nil registers new ones.
	Metrics *metrics.Metrics
	// TLS is the TLS state (certificates, client-certificate verification); nil
	// when serving plain HTTP.
	TLS *auth.ServerTLS
	// Authenticator verifies Bearer/Basic credentials; nil accepts only client
	// certificates (and anonymous callers where Settings.Anonymous allows).
	Authenticator Authenticator
	// Gate decides every request before a source is touched.
	Gate *gate.Gate
	// Sources serve module and checksum database objects through the cache.
	Sources *source.Sources
	// Publisher records versions published into modgate; nil disables the
	// publish API (503).
	Publisher Publisher
	// Audit records every protocol request, publish, delete and denial; nil
	// records nothing (no database configured).
	Audit Auditor
	// AuditQuery answers /api/v1/audit queries; nil disables the API.
	AuditQuery AuditQuerier
	// Console is the web console (internal/console), served under /ui; nil
	// serves none.
	Console http.Handler
	// AuditAffected answers /api/v1/audit/affected (vulndb.go); nil disables it.
	AuditAffected AuditAffected
	// SumDBNames are the checksum databases proxied under /sumdb/.
	SumDBNames []string
	Settings   Settings
}

// Settings are the few configuration values the HTTP layer reads itself.
type Settings struct {
	// Anonymous lets callers without credentials in (development only).
	Anonymous bool
	// AuditRequire refuses audited requests with 503 while nothing can record
	// them.
	AuditRequire bool
	// Replica names this process in audit events.
	Replica string
	// RateLimit is the per-identity request budget.
	RateLimit config.RateLimit
	// ReadHeaderTimeout and IdleTimeout are the HTTP server's.
	ReadHeaderTimeout, IdleTimeout time.Duration
	// HTTP2 offers HTTP/2 to TLS clients; false serves HTTP/1.1 only.
	HTTP2 bool
	// WriteTimeout bounds writing a whole response on routes other than the
	// module objects; WriteProgressTimeout bounds each write of a module object
	// (deadline.go). Zero disables either.
	WriteTimeout, WriteProgressTimeout time.Duration
	// MetricsToken, when not empty, is the bearer token /metrics requires.
	MetricsToken string
	// PublishMaxZipSize bounds an uploaded zip; 0 is the go command's limit.
	PublishMaxZipSize int64
	// Login is what /.well-known/modgate-login publishes for `modgate login`;
	// nil when no OIDC login is configured.
	Login *login.ServerInfo
}

// Server is modgate's HTTP handler and the state behind it.
type Server struct {
	set        Settings
	log        *slog.Logger
	reg        *prometheus.Registry
	m          *metrics.Metrics
	src        *source.Sources
	gate       *gate.Gate
	sumdbs     map[string]bool
	tls        *auth.ServerTLS // nil when serving plain HTTP
	authn      Authenticator
	audit      Auditor
	auditQuery AuditQuerier
	// publisher records versions published into modgate (published.go).
	publisher Publisher
	console   http.Handler
	// vulndb is served at /vulndb/ and affected answers the blast radius of an
	// advisory (vulndb.go); nil when off.
	vulndb   VulnDB
	affected AuditAffected
	ready    []readyCheck
	handler  http.Handler

	// limiter is the per-identity request budget (ratelimit.go); nil is unlimited.
	limiter *rateLimiter
	// unauth bounds requests without valid credentials per source (unauthlimit.go).
	unauth *unauthLimiter
}

type readyCheck struct {
	name  string
	check func(context.Context) (detail string, err error)
}

// New builds a server from opts.
func New(opts Options) (*Server, error) {
	if opts.Gate == nil || opts.Sources == nil {
		return nil, errors.New("server: Gate and Sources are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := opts.Metrics
	if m == nil {
		m = metrics.New(reg)
	}
	s := &Server{
		set:        opts.Settings,
		log:        log,
		reg:        reg,
		m:          m,
		src:        opts.Sources,
		gate:       opts.Gate,
		sumdbs:     make(map[string]bool),
		tls:        opts.TLS,
		authn:      opts.Authenticator,
		audit:      opts.Audit,
		auditQuery: opts.AuditQuery,
		publisher:  opts.Publisher,
		console:    opts.Console,
		affected:   opts.AuditAffected,
		limiter:    newRateLimiter(opts.Settings.RateLimit),
		unauth:     newUnauthLimiter(opts.Settings.RateLimit.Unauthenticated),
	}
	for _, n := range opts.SumDBNames {
		s.sumdbs[n] = true
	}
	s.handler = s.routes()
	return s, nil
}

// AddReadyCheck adds a named check to /readyz. A check failing makes the replica
// unready, unless its error is a *DegradedError (the replica still serves); its
// detail, if any, is shown either way.
func (s *Server) AddReadyCheck(name string, check func(context.Context) (string, error)) {
	s.ready = append(s.ready, readyCheck{name, check})
}

// TLS returns the TLS state (certificates, client-certificate verification), or
// nil when serving plain HTTP.
func (s *Server) TLS() *auth.ServerTLS { return s.tls }

// Handler returns the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.handler }

// Cache returns the server's object cache.
func (s *Server) Cache() *cache.Cache { return s.src.Cache() }

// routes builds the handler once: the middleware every request gets, around a
// gorilla/mux router. The middleware wraps the router rather than being
// registered with its Use, which would build one closure per middleware on
// every request; every path matches some route (the protocol's catch-all), so
// the two are equivalent. The protocol handler validates paths itself: cleaning
// would turn "a/../b" into a redirect instead of the 400 a malformed module path
// deserves, and decoding would hide %2e%2e and %00 from the validators.
func (s *Server) routes() http.Handler {
	r := mux.NewRouter()
	r.SkipClean(true)
	r.UseEncodedPath()

	r.Handle("/healthz", s.endpoint("health", http.HandlerFunc(s.handleHealthz)))
	r.Handle("/readyz", s.endpoint("health", http.HandlerFunc(s.handleReadyz)))
	r.Handle("/metrics", s.endpoint("metrics", s.withMetricsToken(promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{}))))
	r.Handle(login.DiscoveryPath, s.endpoint("login", http.HandlerFunc(s.handleLoginInfo)))

	// The console identifies its callers itself (session cookie or client
	// certificate). No module path can start with "ui/": a module path's first
	// element has a dot.
	if s.console != nil {
		console := s.endpoint("console", s.withWriteProgress(s.console))
		r.Handle("/ui", console)
		r.PathPrefix("/ui/").Handler(console)
	}

	// Everything below needs a verified identity.
	r.Handle("/api/v1/audit/events", s.endpoint("audit-read", s.withIdentity(s.withWriteProgress(http.HandlerFunc(s.handleAuditEvents)))))
	r.Handle("/api/v1/audit/affected", s.endpoint("audit-read", s.withIdentity(s.withWriteProgress(http.HandlerFunc(s.handleAuditAffected)))))
	r.PathPrefix(publish.APIPrefix).Handler(s.endpoint("publish", s.withAuditGate(s.withIdentity(s.withWriteProgress(http.HandlerFunc(s.handlePublishAPI))))))
	r.PathPrefix("/sumdb/").Handler(s.endpoint("sumdb", s.withAuditGate(s.withIdentity(http.HandlerFunc(s.handleSumDB)))))
	r.PathPrefix(VulnDBPrefix).Handler(s.endpoint("vulndb", s.withAuditGate(s.withIdentity(s.withWriteProgress(http.HandlerFunc(s.handleVulnDB))))))
	// The GOPROXY protocol: every other path.
	r.PathPrefix("/").Handler(s.withAuditGate(s.withIdentity(http.HandlerFunc(s.handleModule))))
	return s.withWriteDeadline(s.withSecureHeaders(s.withRequest(dispatch{r})))
}

// dispatch serves a request with the handler the router matches, without the
// route and variables mux.Router.ServeHTTP would copy into the request's
// context (two context copies per request): no handler here reads them, and
// every path matches a route.
type dispatch struct{ r *mux.Router }

func (d dispatch) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	var m mux.RouteMatch
	if d.r.Match(req, &m) && m.Handler != nil {
		m.Handler.ServeHTTP(w, req)
		return
	}
	http.NotFound(w, req)
}

// HTTPServer returns an *http.Server for the handler with modgate's timeouts. The
// server-wide WriteTimeout is left unset: a large zip to a slow client may take
// long. Writes are bounded per request instead (deadline.go): a whole-response
// deadline on small answers, a per-write progress deadline on module objects,
// exports, the console, the vulnerability database and publish (whose upload may
// take longer than the whole-response deadline before its answer is written).
func (s *Server) HTTPServer(addr string) *http.Server {
	var protocols http.Protocols
	protocols.SetHTTP1(true)
	protocols.SetHTTP2(s.set.HTTP2) // net/http offers h2 in ALPN only when set
	return &http.Server{
		Addr:              addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.set.ReadHeaderTimeout,
		IdleTimeout:       s.set.IdleTimeout,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
		Protocols:         &protocols,
	}
}

func (s *Server) handleHealthz(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	fmt.Fprintln(w, "ok")
}

func (s *Server) handleReadyz(w http.ResponseWriter, r *http.Request) {
	ctx, cancel := context.WithTimeout(r.Context(), 2*time.Second)
	defer cancel()
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	status, body := http.StatusOK, ""
	for _, c := range s.ready {
		detail, err := c.check(ctx)
		if deg := (*DegradedError)(nil); errors.As(err, &deg) {
			body += c.name + ": degraded (" + deg.Reason + ")\n"
			continue
		}
		if err != nil {
			status = http.StatusServiceUnavailable
			body += fmt.Sprintf("%s: %v\n", c.name, err)
			continue
		}
		body += c.name + ": ok"
		if detail != "" {
			body += " (" + detail + ")"
		}
		body += "\n"
	}
	w.WriteHeader(status)
	fmt.Fprint(w, body)
}
