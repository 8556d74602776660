package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Channel is the PostgreSQL notification channel on which the api_tokens trigger
// announces revoked or narrowed tokens (payload: the token id).
const Channel = "modgate_api_tokens"

// ListenerApplicationName is the application_name of the listener's connection,
// so operators (and tests) can find it in pg_stat_activity.
const ListenerApplicationName = "modgate-token-listener"

const (
	listenBackoffMin = 100 * time.Millisecond
	listenBackoffMax = 10 * time.Second
	// listenPingEvery is how often an idle listener checks its connection: a
	// connection silently dropped by a firewall would otherwise wait forever
	// for notifications that cannot arrive.
	listenPingEvery = 30 * time.Second
)

// changeRetention is how long api_token_changes keeps its rows
// (migrations/0013). A listener that last read the log longer ago than half of
// it empties the cache instead of reading the log.
const changeRetention = 7 * 24 * time.Hour

// changeMark is where the next catch-up starts reading api_token_changes.
type changeMark struct {
	set  bool
	xmin int64     // pg_snapshot_xmin of the last read's snapshot
	at   time.Time // when the log was last read
}

// Listen evicts tokens from the cache as the database announces their
// revocation, until ctx is done; it always returns nil then. Run it in its own
// goroutine for the life of the Store:
//
//	go store.Listen(ctx)
//
// It holds one dedicated connection (outside the pool) and reconnects with
// jittered exponential backoff (100ms to 10s) when it is lost. Revocations made
// while it was away were not heard, so each time it reconnects it first reads
// every change logged in api_token_changes since it last read that log and
// evicts those tokens, trusting no cached entry until it has; the first time it
// connects it empties the cache instead. In between, CacheTTL still bounds how
// long an entry lives while the database answers.
func (s *Store) Listen(ctx context.Context) error {
	backoff := listenBackoffMin
	for {
		connected, err := s.listenOnce(ctx)
		s.listening.Store(false)
		if ctx.Err() != nil {
			return nil
		}
		if connected {
			backoff = listenBackoffMin
		}
		wait := backoff/2 + rand.N(backoff/2+1)
		s.logger.LogAttrs(ctx, slog.LevelWarn, "tokens: revocation listener disconnected; revocations by other replicas take effect within the cache TTL until it reconnects",
			slog.String("err", err.Error()), slog.Duration("retry_in", wait))
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
		backoff = min(backoff*2, listenBackoffMax)
	}
}

// Listening reports whether the revocation listener is connected, for
// readiness checks and tests.
func (s *Store) Listening() bool { return s.listening.Load() }

// listenOnce connects, listens and handles notifications until the connection
// fails or ctx is done. connected reports whether LISTEN took effect.
func (s *Store) listenOnce(ctx context.Context) (connected bool, err error) {
	cfg := s.pool.Config().ConnConfig.Copy()
	if cfg.RuntimeParams == nil {
		cfg.RuntimeParams = map[string]string{}
	}
	cfg.RuntimeParams["application_name"] = ListenerApplicationName
	// The listener's statements are bounded by queryTimeout; the requests'
	// statement_timeout is theirs.
	delete(cfg.RuntimeParams, "statement_timeout")
	cctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	conn, err := pgx.ConnectConfig(cctx, cfg)
	cancel()
	if err != nil {
		return false, fmt.Errorf("connecting: %w", err)
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), time.Second)
		defer cancel()
		conn.Close(cctx)
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgx.Identifier{Channel}.Sanitize()); err != nil {
		return false, fmt.Errorf("LISTEN: %w", err)
	}
	// LISTEN first, then read the log: a change committed after LISTEN is
	// announced, one committed before it is in the log.
	s.catchingUp.Store(true)
	caughtUp, err := s.catchUp(ctx, conn)
	s.catchingUp.Store(false)
	if err != nil {
		return false, fmt.Errorf("catching up on token changes: %w", err)
	}
	s.listening.Store(true)
	s.logger.LogAttrs(ctx, slog.LevelInfo, "tokens: revocation listener connected",
		slog.String("channel", Channel), slog.String("caught_up", caughtUp))
	for {
		wctx, cancel := context.WithTimeout(ctx, listenPingEvery)
		n, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case ctx.Err() != nil:
			return true, ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Idle: check the connection is still there. pgx leaves a
			// connection usable after a deadline on WaitForNotification.
			pctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
			err = conn.Ping(pctx)
			cancel()
			if err != nil {
				return true, fmt.Errorf("ping: %w", err)
			}
		case err != nil:
			return true, fmt.Errorf("waiting for notifications: %w", err)
		default:
			s.cache.evict(n.Payload)
			s.logger.LogAttrs(ctx, slog.LevelDebug, "tokens: evicted token", slog.String("token_id", n.Payload))
		}
	}
}

// catchUp brings the cache up to date with the changes logged since the last
// read of api_token_changes, and returns what it did for the log. An error
// means the connection failed: the cache is left as it was, for the
// stale-if-error window to use while the database stays away.
func (s *Store) catchUp(ctx context.Context, conn *pgx.Conn) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, s.queryTimeout)
	defer cancel()
	now := s.now()
	// pg_current_snapshot is the statement's snapshot: the transactions older
	// than its xmin had all finished, so the rows they wrote are in this read.
	const xminSQL = `pg_snapshot_xmin(pg_current_snapshot())::text::bigint`
	var xmin int64
	if !s.mark.set || now.Sub(s.mark.at) > changeRetention/2 {
		if err := conn.QueryRow(ctx, `SELECT `+xminSQL).Scan(&xmin); err != nil {
			return "", err
		}
		s.cache.flush()
		s.mark = changeMark{set: true, xmin: xmin, at: now}
		return "cache emptied", nil
	}
	var ids []string
	err := conn.QueryRow(ctx, `SELECT `+xminSQL+`, coalesce(array_agg(DISTINCT token_id), '{}')
		FROM api_token_changes WHERE xid >= $1`, s.mark.xmin).Scan(&xmin, &ids)
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// The server answered but cannot read the log (a schema not migrated
		// to 0013): forgetting everything is the safe fallback.
		s.logger.LogAttrs(ctx, slog.LevelWarn, "tokens: cannot read api_token_changes; emptying the token cache instead",
			slog.String("err", err.Error()))
		s.cache.flush()
		return "cache emptied", nil
	}
	if err != nil {
		return "", err
	}
	for _, id := range ids {
		s.cache.evict(id)
	}
	s.mark = changeMark{set: true, xmin: xmin, at: now}
	// Pruning is bookkeeping; any replica may do it and failure costs nothing.
	if _, err := conn.Exec(ctx, `DELETE FROM api_token_changes WHERE changed_at < now() - $1::interval`, changeRetention); err != nil {
		s.logger.LogAttrs(ctx, slog.LevelDebug, "tokens: pruning api_token_changes", slog.String("err", err.Error()))
	}
	return fmt.Sprintf("%d changed tokens evicted", len(ids)), nil
}
