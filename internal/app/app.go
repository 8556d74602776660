// Package app is modgate's composition root: it turns a configuration into the
// running pieces (database, identity, policy, audit, server) and owns their
// lifetimes. `modgate serve` and the end-to-end tests build modgate through it, so
// what is tested is what runs.
package app

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/console"
	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/firstseen"
	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/mirror"
	"github.com/modgate/modgate/internal/pinstore"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/server"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/storage/s3store"
	"github.com/modgate/modgate/internal/tokens"
)

// App is a configured modgate.
type App struct {
	cfg  config.Config
	log  *slog.Logger
	pool *pgxpool.Pool
	// auditPool is the audit writer's, without statement timeout.
	auditPool *pgxpool.Pool
	server    *server.Server
	core      *Core
	policy    *policy.Engine
	audit     *audit.Writer
	// dbMonitor and tokens feed readiness (degraded.go); nil without a database.
	dbMonitor *database.Monitor
	tokens    *tokens.Store
	closers   []func()
}

// New builds modgate from cfg. Close releases what it opened.
func New(ctx context.Context, cfg config.Config, log *slog.Logger) (_ *App, err error) {
	a := &App{cfg: cfg, log: log}
	defer func() {
		if err != nil {
			a.Close()
		}
	}()
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	dbURL, err := cfg.DatabaseURL()
	if err != nil {
		return nil, err
	}
	if dbURL != "" {
		// The requests' pool: a statement slower than statement_timeout is
		// cancelled and its request answers 503 rather than wait.
		a.pool, err = database.Open(ctx, dbURL, database.WithStatementTimeout(cfg.Database.StatementTimeout.D()))
		if err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		a.closers = append(a.closers, a.pool.Close)
		// The audit writer's own few connections, without the timeout: its
		// COPY of a batch and its partition maintenance must finish however
		// slow the database is (the spool holds events meanwhile), and they
		// must not take the requests' connections.
		a.auditPool, err = database.Open(ctx, dbURL, database.WithMaxConns(auditConns))
		if err != nil {
			return nil, fmt.Errorf("app: %w", err)
		}
		a.closers = append(a.closers, a.auditPool.Close)
		if cfg.Database.Migrate {
			applied, err := database.Migrate(ctx, a.pool)
			if err != nil {
				return nil, fmt.Errorf("app: migrating: %w", err)
			}
			if len(applied) > 0 {
				log.Info("applied database migrations", "migrations", applied)
			}
		}
	}

	authn, err := a.authenticator()
	if err != nil {
		return nil, err
	}
	store, fillLock, err := a.storage(dbURL)
	if err != nil {
		return nil, err
	}
	vdb, err := a.newVulnDB(reg)
	if err != nil {
		return nil, err
	}
	var pol gate.Policy
	var engine *policy.Engine
	if cfg.Policy.Dir != "" {
		popts := policy.Options{
			Logger:     log,
			Registerer: reg,
			CacheSize:  cfg.Policy.CacheSize,
		}
		a.policyFacts(&popts, vdb)
		engine, err = policy.Load(ctx, cfg.Policy.Dir, popts)
		if err != nil {
			return nil, fmt.Errorf("app: loading policy: %w", err)
		}
		pol = engine
		wctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { engine.Watch(wctx, cfg.Policy.WatchInterval.D()); close(done) }()
		a.closers = append(a.closers, func() { stop(); <-done })
	}
	// One store for the cache and published versions: uploads are received in its
	// scratch directory, so a disk store's Put is a rename.
	var published Registry
	var pins *pinstore.Copy
	if a.pool != nil {
		reg := publish.NewRegistry(a.pool, store, log)
		// The replica's own copy of the ledger and the registry, to serve
		// private versions by while PostgreSQL is unreachable.
		pins = a.openPinCopy(reg)
		published = kickingRegistry{Registry: reg, pins: pins}
	}
	var auditor server.Auditor
	if a.pool != nil {
		writerID := cfg.Audit.WriterID
		if writerID == "" {
			writerID = cfg.Replica
		}
		w, err := audit.NewWriter(ctx, audit.WriterConfig{
			WriterID:      writerID,
			Replica:       cfg.Replica,
			SpoolDir:      cfg.AuditSpoolDir(),
			MaxSpoolBytes: cfg.Audit.MaxSpoolBytes,
			Retention:     cfg.Audit.Retention.D(),
		}, a.auditPool, log, reg)
		if err != nil {
			return nil, fmt.Errorf("app: audit: %w", err)
		}
		// Close drains the queue into PostgreSQL; what it cannot ship stays spooled
		// and is replayed at the next start.
		a.closers = append(a.closers, func() {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := w.Close(ctx); err != nil {
				log.Warn("audit: closing writer", "err", err)
			}
		})
		auditor, a.audit = w, w
	} else {
		log.Warn("no database configured: the audit trail is off (requests are only logged)")
	}
	sopts := ServerOptions{
		Config:        cfg,
		Logger:        log,
		Registry:      reg,
		Store:         store,
		FillLock:      fillLock,
		Authenticator: authn,
		Policy:        pol,
		Audit:         auditor,
		AuditQuery:    a.auditQuery(),
		Published:     published,
		AuditAffected: a.affected(vdb),
	}
	if a.pool != nil {
		// The private version ledger: every private .mod and .zip is pinned
		// the first time it is served, and never changes after.
		sopts.Ledger = newLedger(a.pool, log, pins)
		sopts.Outage = pins
		// Consulted only when the policy reads version times (the cool-down).
		sopts.FirstSeen = firstseen.New(a.pool, 0, log)
	}
	if cfg.Console.Enabled {
		sopts.Console = func(c *Core) (http.Handler, error) { return a.console(reg, engine, auditor, c, a.affected(vdb)) }
	}
	core, err := Build(sopts)
	if err != nil {
		return nil, err
	}
	a.core, a.server = core, core.Server
	if vdb != nil {
		a.server.SetVulnDB(vdb)
		// A vulnerability database that cannot be loaded is a degraded feature, not
		// a reason to take the replica out of service: modules are still served.
		a.server.AddReadyCheck("vulndb", func(context.Context) (string, error) {
			detail, err := vdb.Status()
			if err != nil {
				return "", server.Degraded("%v", err)
			}
			return detail, nil
		})
		vctx, stop := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { vdb.Run(vctx); close(done) }()
		a.closers = append(a.closers, func() { stop(); <-done })
	}
	a.watchDatabase(reg)
	a.addDegradableReadyChecks()
	if pins != nil {
		a.server.AddReadyCheck("pin copy", func(context.Context) (string, error) {
			// Never failing: the copy matters only during an outage, and an old
			// one is still better than none. Its age says what an outage would
			// miss.
			n, p := pins.Len()
			detail := fmt.Sprintf("%d pins, %d published versions", n, p)
			if at := pins.Refreshed(); !at.IsZero() {
				detail += fmt.Sprintf(", refreshed %s ago", time.Since(at).Round(time.Second))
			}
			return detail, nil
		})
	}
	if engine != nil {
		a.server.AddReadyCheck("policy", func(context.Context) (string, error) {
			// A failed reload leaves the last good policy in force: report it, but
			// stay ready.
			st := engine.Status()
			detail := "revision " + st.Revision
			if st.LastError != "" {
				detail += "; last reload rejected: " + st.LastError
			}
			return detail, nil
		})
		a.policy = engine
	}
	a.startMirrorSync(reg)
	if b, ok := store.(interface{ CheckBucket(context.Context) error }); ok {
		// A HEAD of a missing object cannot tell "no such key" from "no such
		// bucket", so the storage check alone would pass with the bucket gone.
		a.server.AddReadyCheck("bucket", func(ctx context.Context) (string, error) { return "", b.CheckBucket(ctx) })
	}
	return a, nil
}

// startMirrorSync runs the scheduled syncs of mirror.sync until Close. They are
// served in-process as the "modgate-sync" identity, so policy decides what they
// may warm and the audit trail records every object they fetch.
func (a *App) startMirrorSync(reg prometheus.Registerer) {
	if len(a.cfg.Mirror.Sync) == 0 {
		return
	}
	jobs := make([]mirror.Job, len(a.cfg.Mirror.Sync))
	for i, j := range a.cfg.Mirror.Sync {
		jobs[i] = mirror.Job{Every: j.Every.D(), OnStart: j.OnStart, Modules: j.Modules, Latest: j.Latest, Concurrency: j.Concurrency}
	}
	id := &identity.Identity{Subject: "modgate-sync", Method: identity.MethodInternal}
	sched := mirror.NewScheduler(jobs, a.server.InProcessTransport(id), a.server.Cache().Store().ScratchDir(), a.log, reg)
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { sched.Run(ctx); close(done) }()
	a.closers = append(a.closers, func() { stop(); <-done })
}

// auditConns bounds the audit writer's PostgreSQL connections: one ships the
// spool, one maintains partitions, one spare for the writer without a spool.
const auditConns = 3

// fillLockConns bounds the PostgreSQL connections one replica holds for fill locks,
// and so the number of distinct objects it fetches at once; more wait their turn.
const fillLockConns = 32

// storage opens the configured object store. A bucket shared with other replicas
// comes with a fill lock in PostgreSQL, so that one object is fetched from upstream
// once across all of them; without a database each replica fetches for itself,
// which is correct (writes are atomic) but multiplies upstream traffic.
func (a *App) storage(dbURL string) (storage.Store, func(context.Context, string) (func(), error), error) {
	switch a.cfg.Storage.Backend {
	case "s3":
		s3 := a.cfg.Storage.S3
		ak, sk, err := a.cfg.S3Credentials()
		if err != nil {
			return nil, nil, err
		}
		store, err := s3store.New(s3store.Config{
			Endpoint:   s3.Endpoint,
			Bucket:     s3.Bucket,
			Prefix:     s3.Prefix,
			Region:     s3.Region,
			AccessKey:  ak,
			SecretKey:  sk,
			PathStyle:  s3.PathStyle,
			Insecure:   s3.Insecure,
			CAFile:     s3.CAFile,
			ScratchDir: filepath.Join(a.cfg.Cache.Dir, "scratch"),
		})
		if err != nil {
			return nil, nil, fmt.Errorf("app: %w", err)
		}
		if dbURL == "" {
			a.log.Warn("storage: shared bucket without a database: replicas cannot coordinate fills and may each fetch the same object")
			return store, nil, nil
		}
		locker, err := a.newFillLocker(dbURL)
		if err != nil {
			return nil, nil, err
		}
		return store, locker.Lock, nil
	default:
		store, err := storage.NewDisk(a.cfg.Cache.Dir)
		if err != nil {
			return nil, nil, fmt.Errorf("app: %w", err)
		}
		return store, nil, nil
	}
}

// authenticator builds the Bearer/Basic authenticator from the OIDC and API token
// settings; nil when neither is configured.
func (a *App) authenticator() (server.Authenticator, error) {
	acfg := auth.AuthenticatorConfig{
		FailureBurst:  a.cfg.Auth.FailureBurst,
		FailureRefill: a.cfg.Auth.FailureRefill.D(),
		Logger:        a.log,
		// The collectors are built with the core, after the authenticator; no
		// request is authenticated before both exist.
		OnFailure: func(kind, reason string) {
			if a.core != nil {
				a.core.Metrics.AuthFailures.WithLabelValues(kind, reason).Inc()
			}
		},
	}
	if a.cfg.Auth.OIDCEnabled() {
		v, err := auth.NewOIDCVerifier(a.cfg.Auth.OIDC, a.log)
		if err != nil {
			return nil, err
		}
		acfg.OIDC = v
	}
	if tv, err := a.tokenVerifier(); err != nil {
		return nil, err
	} else if tv != nil {
		acfg.Tokens = tv
	}
	if acfg.OIDC == nil && acfg.Tokens == nil {
		return nil, nil
	}
	return auth.NewAuthenticator(acfg)
}

// console builds the web console. It reads the client certificate through the
// server's TLS state, which exists only once the server does: the closure looks
// it up per request.
func (a *App) console(reg *prometheus.Registry, engine *policy.Engine, auditor server.Auditor, c *Core, affected func(context.Context, string) ([]audit.Exposure, error)) (*console.Console, error) {
	cc := a.cfg.Console
	opts := console.Options{
		Affected:   affected,
		Logger:     a.log,
		SessionTTL: cc.SessionTTL.D(),
		Gatherer:   reg,
		PolicyDir:  a.cfg.Policy.Dir,
		Replica:    a.cfg.Replica,
		CertIdentity: func(r *http.Request) (*identity.Identity, error) {
			if c.TLS == nil {
				return nil, nil
			}
			return c.TLS.IdentityFromTLS(r.TLS)
		},
		// The same router as every request's: the what-if answers what a
		// request would get.
		Route: func(mod string) policy.Route { return gate.PolicyRoute(c.Router.Of(mod)) },
	}
	// Interfaces get nil, not typed nils, when a piece is off. The console's
	// pages and what-if are decided by the gate, like every other request.
	if engine != nil {
		opts.Policy, opts.PolicyStatus = c.Gate, engine.Status
	}
	if a.pool != nil {
		opts.DB = a.pool
	}
	if auditor != nil {
		opts.Audit = auditor
	}
	if cc.SessionKeyFile != "" {
		key, err := os.ReadFile(cc.SessionKeyFile)
		if err != nil {
			return nil, fmt.Errorf("app: console session key: %w", err)
		}
		opts.SessionKey = key
	} else {
		a.log.Info("console: session key generated at start; sessions end with a restart and do not cross replicas (set console.session_key_file)")
	}
	if cc.ClientID != "" {
		ocfg := a.cfg.Auth.OIDC
		// The console's ID tokens are issued to its own client id; other
		// audiences (the CLI's) are not console sign-ins.
		ocfg.Audiences = []string{cc.ClientID}
		v, err := auth.NewOIDCVerifier(ocfg, a.log)
		if err != nil {
			return nil, fmt.Errorf("app: console: %w", err)
		}
		o := &console.OIDC{
			Issuer:      ocfg.Issuer,
			ClientID:    cc.ClientID,
			RedirectURL: cc.RedirectURL,
			Scopes:      cc.Scopes,
			Verifier:    v,
			HTTPClient:  v.HTTPClient(), // trusts auth.oidc.ca_file
		}
		if cc.ClientSecretFile != "" {
			secret, err := os.ReadFile(cc.ClientSecretFile)
			if err != nil {
				return nil, fmt.Errorf("app: console client secret: %w", err)
			}
			o.ClientSecret = strings.TrimSpace(string(secret))
		}
		opts.OIDC = o
	}
	return console.New(opts)
}

// tokenVerifier returns the API token store when tokens are enabled and a database
// is configured, with its revocation listener running until Close.
func (a *App) tokenVerifier() (auth.TokenVerifier, error) {
	if !a.cfg.Auth.APITokens || a.pool == nil {
		return nil, nil
	}
	store, err := tokens.NewStore(a.pool, a.tokenStoreConfig())
	if err != nil {
		return nil, err
	}
	a.tokens = store
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { store.Listen(ctx); close(done) }()
	a.closers = append(a.closers, func() { stop(); <-done })
	return store, nil
}

func (a *App) auditQuery() server.AuditQuerier {
	if a.pool == nil {
		return nil
	}
	return func(ctx context.Context, f audit.Filter) ([]audit.Row, string, error) {
		return audit.Query(ctx, a.pool, f)
	}
}

// Policy returns the policy engine, or nil when policy is disabled.
func (a *App) Policy() *policy.Engine { return a.policy }

// Server returns the HTTP server.
func (a *App) Server() *server.Server { return a.server }

// Serve serves on ln until ctx ends, then drains within the shutdown timeout.
func (a *App) Serve(ctx context.Context, ln net.Listener) error {
	hs := a.server.HTTPServer(ln.Addr().String())
	errc := make(chan error, 1)
	go func() {
		if a.cfg.TLSEnabled() {
			hs.TLSConfig = a.server.TLS().Config()
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	a.log.Info("shutting down", "timeout", a.cfg.Server.ShutdownTimeout.D().String())
	sctx, cancel := context.WithTimeout(context.Background(), a.cfg.Server.ShutdownTimeout.D())
	defer cancel()
	err := hs.Shutdown(sctx)
	a.server.FlushRefusalSummaries() // counted refusals reach the audit trail before it closes
	if err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// Close releases everything New opened, in reverse order.
func (a *App) Close() {
	for i := len(a.closers) - 1; i >= 0; i-- {
		a.closers[i]()
	}
	a.closers = nil
}
