// Package firstseen records when modgate first saw each public module version
// from upstream, durably in PostgreSQL and shared by replicas, so the cool-down
// can measure a version's age from a time the module's author cannot choose.
package firstseen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
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
	cache map[key]time.Time
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
	return &Store{pool: pool, log: log, cache: make(map[key]time.Time), max: cacheSize}
}

// key is a module version as the cache knows it. A struct of the two strings,
// not their concatenation, so looking up the versions of a long list allocates
// nothing.
type key struct{ module, version string }

// FirstSeen returns when modgate first saw module@version, recording now (the
// database's clock) if it never has. ok is false when the database cannot be
// reached; the failure is logged once until the database answers again.
func (s *Store) FirstSeen(ctx context.Context, module, version string) (time.Time, bool) {
	k := key{module, version}
	s.mu.Lock()
	t, hit := s.cache[k]
	s.mu.Unlock()
	if hit {
		return t, true
	}
	t, err := s.record(ctx, module, version)
	if s.answered(ctx, err) != nil {
		return time.Time{}, false
	}
	s.mu.Lock()
	s.put(k, t)
	s.mu.Unlock()
	return t, true
}

// answered logs the database becoming unreachable, once until it answers again,
// and its answering again. It returns err.
func (s *Store) answered(ctx context.Context, err error) error {
	if err != nil {
		if ctx.Err() == nil && !s.failing.Swap(true) {
			s.log.Warn("firstseen: database unreachable; the cool-down uses the upstream's .info Time for single versions, and lists hold the versions whose first sight is not in memory, until it answers", "err", err)
		}
		return err
	}
	if s.failing.Swap(false) {
		s.log.Info("firstseen: database answers again")
	}
	return nil
}

// put caches k's time; s.mu is held.
func (s *Store) put(k key, t time.Time) {
	if _, ok := s.cache[k]; !ok && len(s.cache) >= s.max {
		// A first-sight time never changes, so dropping entries only costs a
		// query; drop an arbitrary one.
		for old := range s.cache {
			delete(s.cache, old)
			break
		}
	}
	s.cache[k] = t
}

// Batch is FirstSeen for every version of one module's list, in one SQL
// statement however long the list: it records now as the first sight of the
// versions never seen and returns when each was first seen. times[i] is
// versions[i]'s. When the database cannot be reached err is non-nil (logged
// once, like FirstSeen's) and times holds what the in-memory cache knows, zero
// elsewhere. Versions the cache holds are not sent to the database.
func (s *Store) Batch(ctx context.Context, module string, versions []string) (times []time.Time, err error) {
	times = make([]time.Time, len(versions))
	var at []int32 // the indexes in versions of the versions sent
	size := 0
	s.mu.Lock()
	for i, v := range versions {
		if t, ok := s.cache[key{module, v}]; ok {
			times[i] = t
		} else if v != "" && !strings.Contains(v, "\n") { // no version, no row: the table forbids ""
			at = append(at, int32(i))
			size += len(v) + 1
		}
	}
	s.mu.Unlock()
	if len(at) == 0 {
		return times, nil
	}
	// The list goes as one text parameter, one version a line: a text[] of
	// 400,000 elements costs an allocation per element to encode.
	var list strings.Builder
	list.Grow(size)
	for _, i := range at {
		list.WriteString(versions[i])
		list.WriteByte('\n')
	}
	ctx, cancel := context.WithTimeout(ctx, batchTimeout)
	defer cancel()
	var now time.Time
	rows, err := s.pool.Query(ctx, batchSQL, module, strings.TrimSuffix(list.String(), "\n"))
	if err == nil {
		var j int64
		var t time.Time
		_, err = pgx.ForEachRow(rows, []any{&j, &t}, func() error {
			switch {
			case j == 0:
				now = t.UTC()
			case j <= int64(len(at)):
				times[at[j-1]] = t.UTC()
			default:
				return fmt.Errorf("firstseen: row for list position %d of %d", j, len(at))
			}
			return nil
		})
	}
	if err == nil && now.IsZero() {
		err = errors.New("firstseen: no statement time")
	}
	if err := s.answered(ctx, err); err != nil {
		for _, i := range at {
			times[i] = time.Time{}
		}
		return times, fmt.Errorf("firstseen: first sight of %d versions of %s: %w", len(at), module, err)
	}
	for _, i := range at {
		if times[i].IsZero() {
			// Recorded by this statement, at its time; or, rarely, by another
			// replica while it ran, a moment earlier.
			times[i] = now
		}
	}
	// A list longer than half the cache would only churn it: the next list of
	// that module asks the database anyway. Shorter ones are cached, so that
	// listing them again, and the .info request that usually follows, ask
	// nothing. The version is cloned: it may be a slice of the whole list's
	// body, which the cache must not keep alive.
	if len(at) <= s.max/2 {
		s.mu.Lock()
		for _, i := range at {
			s.put(key{module, strings.Clone(versions[i])}, times[i])
		}
		s.mu.Unlock()
	}
	return times, nil
}

// batchTimeout bounds Batch's statement: recording the first sight of a
// 400,000-version list takes seconds on a busy database.
const batchTimeout = 15 * time.Second

// batchSQL records the unseen versions of list $2 (one a line) of module $1 and
// returns (position in $2, first sight) for each version recorded before, and
// (0, the statement's time) — the first sight of the versions it records. The
// versions recorded before are looked up first, and only the others inserted:
// an INSERT ... ON CONFLICT DO NOTHING of a known version costs as much as a
// new one, and the rows inserted by a data-modifying CTE are not visible to the
// rest of the statement anyway (one snapshot). A version another replica records
// while the statement runs conflicts and gets no row. Duplicates in the list get
// a row each.
const batchSQL = `WITH v AS (
	SELECT version, i FROM unnest(string_to_array($2, E'\n')) WITH ORDINALITY AS v(version, i)),
f AS (
	SELECT v.i, v.version, t.first_seen FROM v
	LEFT JOIN version_first_seen t ON t.module = $1 AND t.version = v.version),
ins AS (
	INSERT INTO version_first_seen (module, version)
	SELECT $1, version FROM f WHERE first_seen IS NULL
	ON CONFLICT DO NOTHING)
SELECT i, first_seen FROM f WHERE first_seen IS NOT NULL
UNION ALL
SELECT 0, now()`

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
