package database

import (
	"context"
	"fmt"
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
type Locker struct {
	cfg *pgx.ConnConfig
	sem chan struct{}
}

// lockNamespace keeps modgate's lock names apart from any other application's
// advisory locks in the same database.
const lockNamespace = "modgate/fill:"

// NewLocker returns a Locker for the database at url holding at most maxConns
// locks (connections) at once; further Lock calls wait for one to be released.
func NewLocker(url string, maxConns int) (*Locker, error) {
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
	return &Locker{cfg: cfg, sem: make(chan struct{}, maxConns)}, nil
}

// Lock blocks until it holds the lock called name, or ctx ends. The returned
// function releases it.
func (l *Locker) Lock(ctx context.Context, name string) (unlock func(), err error) {
	select {
	case l.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("database: lock %s: %w", name, ctx.Err())
	}
	conn, err := pgx.ConnectConfig(ctx, l.cfg)
	if err != nil {
		<-l.sem
		return nil, fmt.Errorf("database: lock %s: %w", name, err)
	}
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
