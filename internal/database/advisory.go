package database

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// Locker takes PostgreSQL session-level advisory locks named by strings. Replicas
// sharing one bucket use it so that one object is fetched from upstream once
// across all of them: the fetching replica holds the object's lock until the
// object is stored, and the others wait on it.
//
// Each lock is held on a dedicated connection, opened for it and closed to release
// it: a session lock belongs to its connection, and ending the session is the one
// release PostgreSQL guarantees. Held fill locks therefore never take connections
// from the main pool (token checks, audit writes), and if the holder dies, even by
// SIGKILL, PostgreSQL ends its session and the lock goes with it: a crash cannot
// leave an object locked.
//
// While PostgreSQL is unreachable, Lock fails at once for a backoff period
// (100ms doubling to 10s) after each failed connection instead of trying again
// for every object, and says so in the log once when the locks become
// unavailable and once when they come back: callers then fetch without
// coordination, which is correct (stores write atomically) and only costs
// upstream traffic. Each lock opens its own connection, so once PostgreSQL is
// back on the same address the next Lock after the backoff simply connects.
type Locker struct {
	cfg *pgx.ConnConfig
	sem chan struct{}
	log *slog.Logger

	mu       sync.Mutex
	failures int       // consecutive failed connections
	retryAt  time.Time // before this, Lock fails without trying
}

// ErrLocksUnavailable is returned (wrapped) by Lock during the backoff after a
// failure to reach PostgreSQL.
var ErrLocksUnavailable = errors.New("fill locks unavailable: PostgreSQL unreachable")

const (
	lockBackoffMin = 100 * time.Millisecond
	lockBackoffMax = 10 * time.Second
	// lockConnectTimeout bounds a connection attempt when the URL sets none: a
	// blackholed address must not hold a request for its whole deadline.
	lockConnectTimeout = 5 * time.Second
)

// LockerOption configures a Locker.
type LockerOption func(*Locker)

// WithLockerLogger sends the Locker's availability changes to log.
func WithLockerLogger(log *slog.Logger) LockerOption {
	return func(l *Locker) { l.log = log }
}

// lockNamespace keeps modgate's lock names apart from any other application's
// advisory locks in the same database.
const lockNamespace = "modgate/fill:"

// NewLocker returns a Locker for the database at url holding at most maxConns
// locks (connections) at once; further Lock calls wait for one to be released.
func NewLocker(url string, maxConns int, opts ...LockerOption) (*Locker, error) {
	cfg, err := pgx.ParseConfig(url)
	if err != nil {
		return nil, fmt.Errorf("database: invalid database URL") // never echo the URL: it may hold a password
	}
	if maxConns < 1 {
		return nil, fmt.Errorf("database: locker needs at least one connection")
	}
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = "modgate-fill-lock"
	}
	if cfg.ConnectTimeout == 0 {
		cfg.ConnectTimeout = lockConnectTimeout
	}
	l := &Locker{cfg: cfg, sem: make(chan struct{}, maxConns), log: slog.New(slog.DiscardHandler)}
	for _, o := range opts {
		o(l)
	}
	return l, nil
}

// Lock blocks until it holds the lock called name, or ctx ends. The returned
// function releases it.
func (l *Locker) Lock(ctx context.Context, name string) (unlock func(), err error) {
	if err := l.backingOff(); err != nil {
		return nil, fmt.Errorf("database: lock %s: %w", name, err)
	}
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("database: lock %s: %w", name, ctx.Err())
	}
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		<-l.sem
		if ctx.Err() == nil {
			l.failed(ctx, err)
		}
		return nil, fmt.Errorf("database: lock %s: %w", name, err)
	}
	l.connected(ctx)
	release := func() {
		cctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		conn.Close(cctx) // ends the session, and with it the lock
		<-l.sem
	}
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtextextended($1, 0))", lockNamespace+name); err != nil {
		release()
		return nil, fmt.Errorf("database: lock %s: %w", name, err)
	}
	return release, nil
}

// backingOff returns ErrLocksUnavailable while a failed connection's backoff
// lasts.
func (l *Locker) backingOff() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures > 0 && time.Now().Before(l.retryAt) {
		return ErrLocksUnavailable
	}
	return nil
}

// failed records a failed connection and starts (or lengthens) the backoff.
func (l *Locker) failed(ctx context.Context, err error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	backoff := min(lockBackoffMin<<min(l.failures, 10), lockBackoffMax)
	backoff = backoff/2 + rand.N(backoff/2+1)
	l.failures++
	l.retryAt = time.Now().Add(backoff)
	if l.failures == 1 {
		l.log.LogAttrs(ctx, slog.LevelWarn, "database: fill locks unavailable; replicas fetch without coordinating until PostgreSQL answers again",
			slog.String("err", err.Error()), slog.Duration("retry_in", backoff))
	}
}

// connected ends an outage, if there was one.
func (l *Locker) connected(ctx context.Context) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.failures == 0 {
		return
	}
	l.log.LogAttrs(ctx, slog.LevelInfo, "database: fill locks available again; replicas coordinate fills",
		slog.Int("failed_attempts", l.failures))
}
