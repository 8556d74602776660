// Package database opens modgate's PostgreSQL pool and applies the schema in
// migrations/.
//
// Migrations are numbered files (NNNN_name.sql). Each runs in its own transaction and
// is recorded in schema_migrations by its number, so a file merged later with a lower
// number than some already-applied one (several engineers reserving numbers in
// parallel) is still applied on the next `migrate up` instead of being skipped, which
// is why this is a small migrator of our own rather than tern's, whose versions are
// positions and which refuses gaps in the numbering.
package database

import (
	"context"
	"fmt"
	"io/fs"
	"regexp"
	"slices"
	"strconv"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/migrations"
)

// Option configures a pool Open returns.
type Option func(*pgxpool.Config)

// WithStatementTimeout sets PostgreSQL's statement_timeout on every connection
// of the pool (a startup parameter, so it costs no statement): a statement
// running longer is cancelled with SQLSTATE 57014 (see TimedOut). d <= 0 leaves
// the server's setting. Use it for the pool requests use, never for work that
// must wait as long as it takes (migrations, the audit writer's COPY).
func WithStatementTimeout(d time.Duration) Option {
	return func(c *pgxpool.Config) {
		if d > 0 {
			c.ConnConfig.RuntimeParams["statement_timeout"] = strconv.FormatInt(max(d.Milliseconds(), 1), 10)
		}
	}
}

// WithMaxConns caps the pool's connections.
func WithMaxConns(n int32) Option {
	return func(c *pgxpool.Config) {
		if n > 0 {
			c.MaxConns = n
		}
	}
}

// Open connects to url, checks the server answers, and returns the pool.
func Open(ctx context.Context, url string, opts ...Option) (_ *pgxpool.Pool, err error) {
	defer derrors.Wrap(&err, "database.Open")
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// The parse error may quote the URL and its password; keep only the kind.
		return nil, fmt.Errorf("invalid database URL")
	}
	if cfg.ConnConfig.RuntimeParams == nil {
		cfg.ConnConfig.RuntimeParams = map[string]string{}
	}
	for _, o := range opts {
		o(cfg)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, err
	}
	if err := pool.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return pool, nil
}

// Migration is one numbered schema file.
type Migration struct {
	Version   int
	Name      string     // file name
	AppliedAt *time.Time // nil when not applied
	SQL       string
}

var fileRE = regexp.MustCompile(`^(\d+)_[A-Za-z0-9_.-]+\.sql$`)

// Load reads the migrations embedded from migrations/, sorted by version.
func Load() ([]Migration, error) { return LoadFS(migrations.FS) }

// LoadFS reads migrations from fsys.
func LoadFS(fsys fs.FS) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, ".")
	if err != nil {
		return nil, fmt.Errorf("reading migrations: %w", err)
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		m := fileRE.FindStringSubmatch(e.Name())
		if e.IsDir() || m == nil {
			continue
		}
		v, err := strconv.Atoi(m[1])
		if err != nil || v <= 0 {
			return nil, fmt.Errorf("migration %s: bad number", e.Name())
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share number %d", other, e.Name(), v)
		}
		seen[v] = e.Name()
		body, err := fs.ReadFile(fsys, e.Name())
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: e.Name(), SQL: string(body)})
	}
	slices.SortFunc(ms, func(a, b Migration) int { return a.Version - b.Version })
	return ms, nil
}

// advisoryKey serialises concurrent migrators (replicas starting together, parallel
// test processes building a template database).
const advisoryKey = 0x6d6f646761746531 // "modgate1"

const createTable = `CREATE TABLE IF NOT EXISTS schema_migrations (
	version    integer PRIMARY KEY,
	name       text NOT NULL,
	applied_at timestamptz NOT NULL DEFAULT now()
)`

// Migrate applies every migration not yet recorded, in version order, each in its own
// transaction. It returns the names of the files it applied.
func Migrate(ctx context.Context, pool *pgxpool.Pool) (applied []string, err error) {
	defer derrors.Wrap(&err, "database.Migrate")
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	return MigrateConn(ctx, conn.Conn())
}

// MigrateConn is Migrate on a single connection.
func MigrateConn(ctx context.Context, conn *pgx.Conn) (applied []string, err error) {
	return MigrateFS(ctx, conn, migrations.FS)
}

// MigrateFS is MigrateConn with the migrations read from fsys (tests use it).
func MigrateFS(ctx context.Context, conn *pgx.Conn, fsys fs.FS) (applied []string, err error) {
	ms, err := LoadFS(fsys)
	if err != nil {
		return nil, err
	}
	// Migrations take as long as they take, and so does waiting for another
	// replica's: no statement timeout for this session, whatever the pool's
	// (RESET restores the connection's own setting before it goes back).
	if _, err := conn.Exec(ctx, "SET statement_timeout = 0"); err != nil {
		return nil, fmt.Errorf("lifting the statement timeout: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "RESET statement_timeout") //nolint:errcheck // a failed RESET leaves a connection without timeout, no worse
	// A session lock, released before returning: a crash drops the connection and with it the lock.
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock($1)", int64(advisoryKey)); err != nil {
		return nil, fmt.Errorf("taking migration lock: %w", err)
	}
	defer conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock($1)", int64(advisoryKey)) //nolint:errcheck // the session ends soon anyway
	if _, err := conn.Exec(ctx, createTable); err != nil {
		return nil, fmt.Errorf("creating schema_migrations: %w", err)
	}
	done, err := appliedVersions(ctx, conn)
	if err != nil {
		return nil, err
	}
	for _, m := range ms {
		if _, ok := done[m.Version]; ok {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, m.SQL); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("applying %s: %w", m.Name, err)
		}
		applied = append(applied, m.Name)
	}
	return applied, nil
}

func appliedVersions(ctx context.Context, conn *pgx.Conn) (map[int]time.Time, error) {
	rows, err := conn.Query(ctx, "SELECT version, applied_at FROM schema_migrations")
	if err != nil {
		return nil, fmt.Errorf("reading schema_migrations: %w", err)
	}
	done := map[int]time.Time{}
	for rows.Next() {
		var v int
		var at time.Time
		if err := rows.Scan(&v, &at); err != nil {
			return nil, err
		}
		done[v] = at
	}
	return done, rows.Err()
}

// Status lists every known migration with when it was applied (nil if pending).
func Status(ctx context.Context, pool *pgxpool.Pool) (_ []Migration, err error) {
	defer derrors.Wrap(&err, "database.Status")
	ms, err := Load()
	if err != nil {
		return nil, err
	}
	conn, err := pool.Acquire(ctx)
	if err != nil {
		return nil, err
	}
	defer conn.Release()
	var exists bool
	if err := conn.QueryRow(ctx, "SELECT to_regclass('schema_migrations') IS NOT NULL").Scan(&exists); err != nil {
		return nil, err
	}
	if !exists {
		return ms, nil
	}
	done, err := appliedVersions(ctx, conn.Conn())
	if err != nil {
		return nil, err
	}
	for i := range ms {
		if at, ok := done[ms[i].Version]; ok {
			ms[i].AppliedAt = &at
		}
	}
	return ms, nil
}
