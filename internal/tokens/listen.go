package tokens

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"time"

	"github.com/jackc/pgx/v5"
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

// Listen evicts tokens from the cache as the database announces their
// revocation, until ctx is done; it always returns nil then. Run it in its own
// goroutine for the life of the Store:
//
//	go store.Listen(ctx)
//
// It holds one dedicated connection (outside the pool) and reconnects with
// jittered exponential backoff (100ms to 10s) when it is lost. Each time it
// (re)connects it empties the cache, since revocations made while it was away
// were not heard; in between, CacheTTL still bounds how long any entry lives.
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
	s.cache.flush()
	s.listening.Store(true)
	s.logger.LogAttrs(ctx, slog.LevelInfo, "tokens: revocation listener connected", slog.String("channel", Channel))
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
