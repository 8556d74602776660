// Package firstseen records when modgate first saw each public module version
// from upstream, durably in PostgreSQL and shared by replicas, so the cool-down
// can measure a version's age from a time the module's author cannot choose.
package firstseen

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultCacheSize bounds the in-memory cache of recorded times.
const DefaultCacheSize = 65536

// Store records and answers first-sight times. Safe for concurrent use.
type Store struct {
	pool *pgxpool.Pool
	log  *slog.Logger

	mu    sync.Mutex
	cache map[string]time.Time
	max   int

	failing atomic.Bool // logged that the database is unreachable
}

// New returns a store over pool; cacheSize <= 0 means DefaultCacheSize.
func New(pool *pgxpool.Pool, cacheSize int, log *slog.Logger) *Store {
	if cacheSize <= 0 {
		cacheSize = DefaultCacheSize
	}
	if log == nil {
		log = slog.Default()
	}
	return &Store{pool: pool, log: log, cache: make(map[string]time.Time), max: cacheSize}
}

// FirstSeen returns when modgate first saw module@version, recording now (the
// database's clock) if it never has. ok is false when the database cannot be
// reached; the failure is logged once until the database answers again.
func (s *Store) FirstSeen(ctx context.Context, module, version string) (time.Time, bool) {
	key := module + "@" + version
	s.mu.Lock()
	t, hit := s.cache[key]
	s.mu.Unlock()
	if hit {
		return t, true
	}
	t, err := s.record(ctx, module, version)
	if err != nil {
		if ctx.Err() == nil && !s.failing.Swap(true) {
			s.log.Warn("firstseen: database unreachable; the cool-down uses the upstream's .info Time until it answers", "err", err)
		}
		return time.Time{}, false
	}
	if s.failing.Swap(false) {
		s.log.Info("firstseen: database answers again")
	}
	s.mu.Lock()
	if len(s.cache) >= s.max {
		// A first-sight time never changes, so dropping entries only costs a
		// query; drop an arbitrary one.
		for k := range s.cache {
			delete(s.cache, k)
			break
		}
	}
	s.cache[key] = t
	s.mu.Unlock()
	return t, true
}

const recordSQL = `WITH ins AS (
	INSERT INTO version_first_seen (module, version) VALUES ($1, $2)
	ON CONFLICT DO NOTHING RETURNING first_seen)
SELECT first_seen FROM ins
UNION ALL
SELECT first_seen FROM version_first_seen WHERE module = $1 AND version = $2
LIMIT 1`

func (s *Store) record(ctx context.Context, module, version string) (time.Time, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	// Two tries: a row committed by another replica after this statement's
	// snapshot was taken is neither inserted nor visible; the second statement
	// sees it.
	for range 2 {
		var t time.Time
		err := s.pool.QueryRow(ctx, recordSQL, module, version).Scan(&t)
		if errors.Is(err, pgx.ErrNoRows) {
			continue
		}
		return t.UTC(), err
	}
	return time.Time{}, errors.New("firstseen: no row after insert")
}
