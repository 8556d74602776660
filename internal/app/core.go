package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/gitsource"
	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/pinstore"
	"github.com/modgate/modgate/internal/route"
	"github.com/modgate/modgate/internal/server"
	"github.com/modgate/modgate/internal/source"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/upstream"
	"github.com/modgate/modgate/internal/verify"
	"github.com/modgate/modgate/internal/version"
)

// Registry is the record of versions published into modgate, as the sources
// read it and the publish API writes it; *publish.Registry implements it.
type Registry interface {
	source.Registry
	server.Publisher
}

// ServerOptions are the pieces of modgate that need a database or an identity
// provider, built by New; tests that need none of them pass a Config alone.
type ServerOptions struct {
	Config   config.Config
	Logger   *slog.Logger
	Registry *prometheus.Registry
	// Store overrides the disk store at Config.Cache.Dir.
	Store storage.Store
	// UpstreamTransport overrides the HTTP transport to upstream mirrors.
	UpstreamTransport http.RoundTripper
	// FillLock serializes fills of one object across replicas sharing Store.
	FillLock      func(ctx context.Context, key string) (unlock func(), err error)
	Authenticator server.Authenticator
	// Policy nil lets every authenticated caller do everything.
	Policy     gate.Policy
	Audit      server.Auditor
	AuditQuery server.AuditQuerier
	// Published nil disables publishing and serves no published versions.
	Published Registry
	// Ledger nil records no private version hashes.
	Ledger source.Ledger
	// Outage is the replica's copy of the ledger's pins and the published
	// versions, read while PostgreSQL is unreachable; nil refuses every
	// private version not in the object cache then.
	Outage source.OutageCopy
	// FirstSeen records when modgate first saw each public version; the
	// cool-down measures age from the later of that and the .info Time. nil
	// trusts the .info Time alone.
	FirstSeen gate.FirstSeen
	// Console builds the web console once the gate and TLS state exist; nil
	// serves none.
	Console func(c *Core) (http.Handler, error)
	// AuditAffected answers /api/v1/audit/affected; nil disables it.
	AuditAffected server.AuditAffected
}

// Core is the request path: TLS, the sources with their cache, the router, the
// gate and the HTTP server over them.
type Core struct {
	Metrics *metrics.Metrics
	TLS     *auth.ServerTLS // nil when serving plain HTTP
	Router  *route.Router
	Git     *gitsource.Source // nil when no private route is configured
	Sources *source.Sources
	Gate    *gate.Gate
	Server  *server.Server
}

// NewServer builds modgate's HTTP server from opts.
func NewServer(opts ServerOptions) (*server.Server, error) {
	c, err := Build(opts)
	if err != nil {
		return nil, err
	}
	return c.Server, nil
}

// Build builds the request path from opts.
func Build(opts ServerOptions) (*Core, error) {
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
			return nil, fmt.Errorf("app: %w", err)
		}
		store = d
	}
	c := &Core{Metrics: m}
	if cfg.TLSEnabled() {
		st, err := auth.NewServerTLS(cfg.TLS, log)
		if err != nil {
			return nil, err
		}
		c.TLS = st
		reg.MustRegister(metrics.CertificateExpiry("server", st.NotAfter))
	}
	// The cache directory's filesystem: the objects with storage.backend disk,
	// fills in progress with s3; a full disk fails fills.
	cacheDir := cfg.Cache.Dir
	reg.MustRegister(metrics.Filesystem(func() (uint64, uint64, bool) { return storage.FilesystemUsage(cacheDir) }))
	chain, err := newChain(cfg, opts.UpstreamTransport, log, m)
	if err != nil {
		return nil, err
	}
	if c.Git, err = newGitSource(cfg, log, reg); err != nil {
		return nil, err
	}
	var servedByGit func(string) bool
	if c.Git != nil {
		servedByGit = c.Git.Serves
	}
	c.Router = route.New(cfg.Private.AllPatterns(), servedByGit)

	objects := cache.New(store, cache.Config{NegativeTTL: cfg.Cache.NegativeTTL.D(), Lock: opts.FillLock, MemoryBytes: cfg.Cache.MemoryBytes}, log, m)
	public := source.NewPublic(chain, nil, cfg.SumDB.NoVerifyPatterns(), m)
	var published *source.Published
	if opts.Published != nil {
		published = source.NewPublished(opts.Published)
	}
	answers, err := source.NewSumDBAnswers(cfg.SumDB.Key, cfg.SumDB.Names)
	if err != nil {
		return nil, fmt.Errorf("app: %w", err)
	}
	c.Sources = source.New(objects, public, source.NewGit(c.Git), published, opts.Ledger, source.Config{
		ListTTL:        cfg.Cache.ListTTL.D(),
		PrivateRefresh: cfg.Private.Refresh.D(),
		SumDBLatestTTL: cfg.SumDB.LatestTTL.D(),
		SumDBAnswers:   answers,
		// One counter for integrity failures, public (checksum database) and
		// private (ledger).
		OnIntegrityFailure: m.IntegrityFailures.Inc,
		Outage:             opts.Outage,
		PrefetchZips:       cfg.Cache.PrefetchZips,
		OnPrefetch:         func(result string) { m.ZipPrefetches.WithLabelValues(result).Inc() },
	}, log)
	if cfg.SumDB.Verify {
		// The verifier's remote reads go through the same cache entries as the
		// /sumdb/ proxy, so a lookup modgate made to verify a zip is also the
		// one the go command gets, and tiles are fetched once for both.
		var v *verify.Verifier
		v, err = verify.New(verify.Config{
			Key:    cfg.SumDB.Key,
			State:  &verify.StoreState{Store: store},
			Logger: log,
			Remote: func(ctx context.Context, path string) ([]byte, error) {
				return c.Sources.ReadSumDB(ctx, v.Name(), strings.TrimPrefix(path, "/"))
			},
		})
		if err != nil {
			return nil, err
		}
		public.SetVerifier(v)
	}
	c.Gate = gate.New(opts.Policy, c.Router, c.Sources)
	if opts.FirstSeen != nil {
		c.Gate.SetFirstSeen(opts.FirstSeen)
	}

	var consoleHandler http.Handler
	if opts.Console != nil {
		if consoleHandler, err = opts.Console(c); err != nil {
			return nil, err
		}
	}
	set := server.Settings{
		Anonymous:         cfg.Auth.Anonymous,
		AuditRequire:      cfg.Audit.Require,
		Replica:           cfg.Replica,
		RateLimit:         cfg.Server.RateLimit,
		ReadHeaderTimeout: cfg.Server.ReadHeaderTimeout.D(),
		IdleTimeout:       cfg.Server.IdleTimeout.D(),
		HTTP2:             cfg.Server.HTTP2,
		PublishMaxZipSize: cfg.Publish.MaxZipSize,

		WriteTimeout:         cfg.Server.WriteTimeout.D(),
		WriteProgressTimeout: cfg.Server.WriteProgressTimeout.D(),
	}
	if f := cfg.Server.MetricsTokenFile; f != "" {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("server.metrics_token_file: %w", err)
		}
		if set.MetricsToken = strings.TrimSpace(string(b)); set.MetricsToken == "" {
			return nil, fmt.Errorf("server.metrics_token_file %s is empty", f)
		}
	}
	if cfg.Auth.OIDCEnabled() && cfg.Auth.LoginClientID != "" {
		set.Login = &login.ServerInfo{Issuer: cfg.Auth.OIDC.Issuer, ClientID: cfg.Auth.LoginClientID, Scopes: cfg.Auth.LoginScopes}
	}
	sopts := server.Options{
		Logger:        log,
		Registry:      reg,
		Metrics:       m,
		TLS:           c.TLS,
		Authenticator: opts.Authenticator,
		Gate:          c.Gate,
		Sources:       c.Sources,
		Audit:         opts.Audit,
		AuditQuery:    opts.AuditQuery,
		Console:       consoleHandler,
		SumDBNames:    cfg.SumDB.Names,
		Settings:      set,
		AuditAffected: opts.AuditAffected,
	}
	// Interfaces get nil, not typed nils, when a piece is off.
	if opts.Published != nil {
		sopts.Publisher = opts.Published
	}
	if c.Server, err = server.New(sopts); err != nil {
		return nil, err
	}
	c.Server.AddReadyCheck("storage", func(ctx context.Context) (string, error) {
		_, err := store.Stat(ctx, "readyz-probe")
		if err != nil && errors.Is(err, derrors.NotFound) {
			return "", nil
		}
		return "", err
	})
	return c, nil
}

// newChain builds the upstream chain: upstream.mirrors when set (each with its own
// TLS, credentials, timeouts and concurrency limit), else the upstream.proxies
// GOPROXY-style list sharing one transport (transport, when set, applies to that
// list only: a mirror with its own settings has its own client). In offline mode
// the chain contacts no mirror at all.
func newChain(cfg config.Config, transport http.RoundTripper, log *slog.Logger, m *metrics.Metrics) (*upstream.Chain, error) {
	ucfg := upstream.Config{
		ConnectTimeout:  cfg.Upstream.ConnectTimeout.D(),
		HeaderTimeout:   cfg.Upstream.HeaderTimeout.D(),
		BodyIdleTimeout: cfg.Upstream.BodyIdleTimeout.D(),
		Retries:         cfg.Upstream.Retries,
		RetryBackoff:    cfg.Upstream.RetryBackoff.D(),
		UserAgent:       "modgate/" + version.Version,
		Offline:         cfg.Upstream.Offline,
	}
	var entries []upstream.Entry
	if len(cfg.Upstream.Mirrors) > 0 {
		for _, mc := range cfg.Upstream.Mirrors {
			e, err := upstream.NewMirror(mirrorConfig(mc), ucfg)
			if err != nil {
				return nil, err
			}
			entries = append(entries, e)
		}
	} else {
		var err error
		if entries, err = upstream.ParseList(cfg.UpstreamList()); err != nil {
			return nil, err
		}
	}
	return upstream.NewChain(entries, ucfg, transport, log, m), nil
}

// newGitSource builds the private git source from private.routes; nil when no
// route is configured.
func newGitSource(cfg config.Config, log *slog.Logger, reg prometheus.Registerer) (*gitsource.Source, error) {
	if len(cfg.Private.Routes) == 0 {
		return nil, nil
	}
	dir := cfg.Private.MirrorDir
	if dir == "" {
		dir = filepath.Join(cfg.Cache.Dir, ".git-mirrors")
	}
	var routes []gitsource.Route
	for _, r := range cfg.Private.Routes {
		password, err := r.Credentials.Password()
		if err != nil {
			return nil, err
		}
		routes = append(routes, gitsource.Route{
			Pattern:   r.Pattern,
			Repo:      r.Repo,
			RootDepth: r.RootDepth,
			Auth: gitsource.Auth{
				Username:       r.Credentials.Username,
				Password:       password,
				SSHKeyFile:     r.Credentials.SSHKeyFile,
				KnownHostsFile: r.Credentials.KnownHostsFile,
			},
		})
	}
	fetches := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_git_fetches_total",
		Help: "git fetches of private repositories, by result (ok, not_found, rejected_or_unreachable, timeout).",
	}, []string{"result"})
	fetchSeconds := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "modgate_git_fetch_seconds",
		Help:    "Duration of git fetches of private repositories.",
		Buckets: prometheus.ExponentialBuckets(0.05, 2, 12),
	})
	reg.MustRegister(fetches, fetchSeconds)
	return gitsource.New(gitsource.Options{
		Dir:     dir,
		Refresh: cfg.Private.Refresh.D(),
		Timeout: cfg.Private.GitTimeout.D(),
		Routes:  routes,
		Logger:  log,
		OnFetch: func(elapsed time.Duration, err error) {
			fetchSeconds.Observe(elapsed.Seconds())
			fetches.WithLabelValues(fetchResult(err)).Inc()
		},
	})
}

func fetchResult(err error) string {
	switch {
	case err == nil:
		return "ok"
	case errors.Is(err, derrors.NotFound):
		return "not_found"
	case errors.Is(err, derrors.UpstreamTimeout):
		return "timeout"
	}
	return "rejected_or_unreachable"
}

// ledgerPins adapts the private version ledger to what the sources need, and
// keeps the replica's outage copy (internal/pinstore) up with what it pins.
type ledgerPins struct {
	l    *ledger.Ledger
	pins *pinstore.Copy // nil: no outage copy
}

func (p ledgerPins) Pin(ctx context.Context, module, version, file, h1, source string) error {
	e, err := p.l.Pin(ctx, module, version, file, h1, source)
	if err == nil && p.pins != nil && !p.pins.Pinned(module, version, file) {
		p.pins.AddPins(e)
		p.pins.Kick()
	}
	return err
}

func (p ledgerPins) Recorded(ctx context.Context, module, version string) ([]source.Pinned, error) {
	entries, err := p.l.Lookup(ctx, module, version)
	if err != nil {
		return nil, err
	}
	out := make([]source.Pinned, len(entries))
	for i, e := range entries {
		out[i] = source.Pinned{File: e.File, Hash: e.Hash, Source: e.Source}
	}
	return out, nil
}

// NewLedger returns the private version ledger over pool, as the sources use it.
func NewLedger(pool *pgxpool.Pool, log *slog.Logger) source.Ledger {
	return newLedger(pool, log, nil)
}

// newLedger is NewLedger checking bytes against pins while PostgreSQL is
// unreachable, and recording what it pins.
func newLedger(pool *pgxpool.Pool, log *slog.Logger, pins *pinstore.Copy) source.Ledger {
	opts := []ledger.Option{ledger.WithLogger(log)}
	if pins != nil {
		opts = append(opts, ledger.WithOutageCopy(pins.Pin))
	}
	return ledgerPins{l: ledger.New(pool, opts...), pins: pins}
}

// mirrorConfig is the connection settings of one configured mirror, shared by the
// module chain and the vulnerability database's upstream.
func mirrorConfig(mc config.UpstreamMirror) upstream.MirrorConfig {
	return upstream.MirrorConfig{
		URL:                 mc.URL,
		FallThroughAnyError: mc.OnError == "next",
		CAFile:              mc.CAFile,
		ClientCertFile:      mc.ClientCertFile,
		ClientKeyFile:       mc.ClientKeyFile,
		Username:            mc.Username,
		PasswordFile:        mc.PasswordFile,
		ConnectTimeout:      mc.ConnectTimeout.D(),
		HeaderTimeout:       mc.HeaderTimeout.D(),
		BodyIdleTimeout:     mc.BodyIdleTimeout.D(),
		MaxConcurrency:      mc.MaxConcurrency,
	}
}
