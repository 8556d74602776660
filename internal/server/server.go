// Package server wires modgate's HTTP surface: routes, middleware and the mapping
// from errors to statuses. The protocol, cache and upstream logic live in their own
// packages; this one composes them.
package server

import (
	"context"
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
	"github.com/modgate/modgate/internal/gitsource"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/upstream"
	"github.com/modgate/modgate/internal/verify"
)

// Options are the server's dependencies. Zero values get sensible defaults where
// one exists.
type Options struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Store overrides the disk store at Config.Cache.Dir.
	Store storage.Store
	// UpstreamTransport overrides the HTTP transport to upstream mirrors.
	UpstreamTransport http.RoundTripper
	// Authenticator verifies Bearer/Basic credentials; nil accepts only client
	// certificates (and anonymous callers where auth.anonymous allows).
	Authenticator Authenticator
	// Policy decides requests; nil lets every authenticated caller pull anything.
	Policy Policy
	// Audit records every protocol request, publish, delete and denial; nil
	// records nothing (no database configured).
	Audit Auditor
	// AuditQuery answers /api/v1/audit queries; nil disables the API.
	AuditQuery AuditQuerier
	// Published is the registry of versions published into modgate; nil disables
	// the publish API (503) and serves no published versions.
	Published Published
	// FillLock serializes fills of one object across replicas sharing Store
	// (cache.Config.Lock); nil when this process is the store's only user.
	FillLock func(ctx context.Context, key string) (unlock func(), err error)
	// Console is the web console (internal/console), served under /ui; nil
	// serves none.
	Console http.Handler
}

// Server is modgate's HTTP handler and the state behind it.
type Server struct {
	cfg    config.Config
	log    *slog.Logger
	reg    *prometheus.Registry
	m      *metrics.Metrics
	cache  *cache.Cache
	chain  *upstream.Chain
	sumdbs map[string]bool
	// sumdbAnswers checks checksum database answers before they are cached
	// (sumdbcheck.go); nil when sumdb.key names none of the proxied databases.
	sumdbAnswers *verify.Answers
	tls          *auth.ServerTLS // nil when serving plain HTTP
	authn        Authenticator
	policy       Policy
	audit        Auditor
	auditQuery   AuditQuerier
	// published serves and records versions published into modgate (published.go).
	published Published
	// git serves private.routes (private.go); privatePatterns is private.patterns
	// plus the routes' patterns.
	git             *gitsource.Source
	privatePatterns string
	console         http.Handler
	ready           []readyCheck
	router          *mux.Router

	// verifier checks public .mod and .zip objects against the checksum database
	// before they are cached (verify.go); nil when sumdb.verify is off.
	verifier *verify.Verifier
	// limiter is the per-identity request budget (ratelimit.go); nil is unlimited.
	limiter *rateLimiter
	// quarantine passes over mirrors that served an object failing verification.
	quarantine quarantine
}

type readyCheck struct {
	name  string
	check func(context.Context) (detail string, err error)
}

// New builds a server from opts.
func New(opts Options) (*Server, error) {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registry
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m := metrics.New(reg)

	store := opts.Store
	if store == nil {
		d, err := storage.NewDisk(cfg.Cache.Dir)
		if err != nil {
			return nil, err
		}
		store = d
	}
	chain, err := newChain(cfg, opts.UpstreamTransport, log, m)
	if err != nil {
		return nil, err
	}

	s := &Server{
		cfg:        cfg,
		log:        log,
		reg:        reg,
		m:          m,
		cache:      cache.New(store, cache.Config{NegativeTTL: cfg.Cache.NegativeTTL.D(), Lock: opts.FillLock}, log, m),
		chain:      chain,
		sumdbs:     make(map[string]bool),
		authn:      opts.Authenticator,
		policy:     opts.Policy,
		audit:      opts.Audit,
		auditQuery: opts.AuditQuery,
		published:  opts.Published,
		console:    opts.Console,
		limiter:    newRateLimiter(cfg.Server.RateLimit),
	}
	if s.policy == nil {
		s.policy = allowAll{}
	}
	s.privatePatterns = cfg.Private.AllPatterns()
	if s.git, err = newGitSource(cfg, s); err != nil {
		return nil, err
	}
	if s.verifier, err = newVerifier(s, store); err != nil {
		return nil, err
	}
	if cfg.TLSEnabled() {
		st, err := auth.NewServerTLS(cfg.TLS, log)
		if err != nil {
			return nil, err
		}
		s.tls = st
	}
	for _, n := range cfg.SumDB.Names {
		s.sumdbs[n] = true
	}
	if s.sumdbAnswers, err = newSumDBAnswers(cfg.SumDB.Key, s.sumdbs); err != nil {
		return nil, err
	}
	s.AddReadyCheck("storage", func(ctx context.Context) (string, error) {
		_, err := store.Stat(ctx, "readyz-probe")
		if err != nil && derrorsIsNotFound(err) {
			return "", nil
		}
		return "", err
	})
	s.router = s.routes()
	return s, nil
}

// AddReadyCheck adds a named check to /readyz. A check failing makes the replica
// unready; its detail, if any, is shown either way.
func (s *Server) AddReadyCheck(name string, check func(context.Context) (string, error)) {
	s.ready = append(s.ready, readyCheck{name, check})
}

// TLS returns the TLS state (certificates, client-certificate verification), or
// nil when serving plain HTTP.
func (s *Server) TLS() *auth.ServerTLS { return s.tls }

// Handler returns the root HTTP handler.
func (s *Server) Handler() http.Handler { return s.router }

// Cache returns the server's object cache.
func (s *Server) Cache() *cache.Cache { return s.cache }

func (s *Server) routes() *mux.Router {
	r := mux.NewRouter()
	// The protocol handler validates paths itself: cleaning would turn "a/../b" into
	// a redirect instead of the 400 a malformed module path deserves, and decoding
	// would hide %2e%2e and %00 from the validators.
	r.SkipClean(true)
	r.UseEncodedPath()
	r.Use(s.withSecureHeaders, s.withRequestID, s.withLogging)

	r.Handle("/healthz", s.endpoint("health", http.HandlerFunc(s.handleHealthz)))
	r.Handle("/readyz", s.endpoint("health", http.HandlerFunc(s.handleReadyz)))
	r.Handle("/metrics", s.endpoint("metrics", promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{})))
	r.Handle(login.DiscoveryPath, s.endpoint("login", http.HandlerFunc(s.handleLoginInfo)))

	// The console identifies its callers itself (session cookie or client
	// certificate). No module path can start with "ui/": a module path's first
	// element has a dot.
	if s.console != nil {
		r.Handle("/ui", s.endpoint("console", s.console))
		r.PathPrefix("/ui/").Handler(s.endpoint("console", s.console))
	}

	// Everything below needs a verified identity.
	r.Handle("/api/v1/audit/events", s.endpoint("audit-read", s.withIdentity(http.HandlerFunc(s.handleAuditEvents))))
	r.PathPrefix(publish.APIPrefix).Handler(s.endpoint("publish", s.withAuditGate(s.withIdentity(http.HandlerFunc(s.handlePublishAPI)))))
	r.PathPrefix("/sumdb/").Handler(s.endpoint("sumdb", s.withAuditGate(s.withIdentity(http.HandlerFunc(s.handleSumDB)))))
	r.PathPrefix("/").Handler(s.withAuditGate(s.withIdentity(http.HandlerFunc(s.handleModule))))
	return r
}

// HTTPServer returns an *http.Server for the handler with modgate's timeouts. The
// write timeout is left unset: a large zip to a slow client may take long, and a
// stalled client is cut off by the TCP keep-alive and the idle timeout instead.
func (s *Server) HTTPServer(addr string) *http.Server {
	return &http.Server{
		Addr:              addr,
		Handler:           s.Handler(),
		ReadHeaderTimeout: s.cfg.Server.ReadHeaderTimeout.D(),
		IdleTimeout:       s.cfg.Server.IdleTimeout.D(),
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelWarn),
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
