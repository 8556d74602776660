package tokens

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

var _ auth.TokenVerifier = (*Store)(nil)

// VerifyToken implements auth.TokenVerifier: it returns the identity of the
// token whose secret is presented.
//
// Refusals are derrors.Unauthenticated with auth.ReasonAPITokenMalformed,
// ReasonAPITokenUnknown (no such token, or the secret does not match it),
// ReasonAPITokenRevoked or ReasonAPITokenExpired; revoked and expired are only
// told to a caller holding the right secret. A database failure is
// derrors.Unavailable. Errors name the token id, never the secret.
func (s *Store) VerifyToken(ctx context.Context, secret string) (*identity.Identity, error) {
	id, ok := parseSecret(secret)
	if !ok {
		return nil, derrors.New(derrors.Unauthenticated, auth.ReasonAPITokenMalformed)
	}
	hash := hashSecret(secret)
	now := s.now()
	// While a reconnected listener catches up on revocations it did not hear,
	// no cached entry is trusted: the database answers instead.
	if !s.catchingUp.Load() {
		if e := s.cache.get(hash, now); e != nil {
			// Expiry is checked on every hit, so a cached token stops working at
			// its expiry, not up to a TTL later.
			if !e.expiresAt.IsZero() && !now.Before(e.expiresAt) {
				return nil, errExpired(id, e.expiresAt)
			}
			return cloneIdentity(&e.id), nil
		}
	}
	// Concurrent misses for one secret share one query: a CI job starting
	// fifty downloads at once should not send fifty queries every TTL.
	v, err, _ := s.loads.Do(string(hash[:]), func() (any, error) {
		// Detached from the first caller, whose cancellation must not fail the
		// others waiting on the same load.
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.queryTimeout)
		defer cancel()
		return s.load(lctx, id, hash)
	})
	if err != nil {
		return nil, err
	}
	return cloneIdentity(&v.(*entry).id), nil
}

// load verifies the secret hashing to hash against the database row of token id
// and caches the result.
func (s *Store) load(ctx context.Context, id string, hash [sha256.Size]byte) (*entry, error) {
	epoch := s.cache.currentEpoch()
	var (
		stored        []byte
		subject       string
		teams, scopes []string
		expiresAt     *time.Time
		revokedAt     *time.Time
		lastUsedAt    *time.Time
	)
	err := s.pool.QueryRow(ctx, `SELECT secret_hash, subject, teams, scopes, expires_at, revoked_at, last_used_at
		FROM api_tokens WHERE id = $1`, id).Scan(&stored, &subject, &teams, &scopes, &expiresAt, &revokedAt, &lastUsedAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("no token with id %s", id), auth.ReasonAPITokenUnknown)
	}
	if err != nil {
		return s.loadStale(ctx, id, hash, epoch, err)
	}
	if s.stale.CompareAndSwap(true, false) {
		s.logger.LogAttrs(ctx, slog.LevelInfo, "tokens: database reachable again; verifying API tokens against it")
	}
	if subtle.ConstantTimeCompare(stored, hash[:]) != 1 {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("secret does not match token %s", id), auth.ReasonAPITokenUnknown)
	}
	now := s.now()
	if revokedAt != nil {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("token %s revoked at %s", id, revokedAt.UTC().Format(time.RFC3339)), auth.ReasonAPITokenRevoked)
	}
	if expiresAt != nil && !now.Before(*expiresAt) {
		return nil, errExpired(id, *expiresAt)
	}
	if lastUsedAt == nil || now.Sub(*lastUsedAt) >= lastUsedInterval {
		s.touch(ctx, id)
	}
	e := &entry{
		id: identity.Identity{
			Subject: subject,
			Teams:   teams,
			Method:  identity.MethodToken,
			TokenID: id,
			Scopes:  scopes,
		},
		cachedAt:   now,
		verifiedAt: now,
	}
	if expiresAt != nil {
		e.expiresAt = *expiresAt
	}
	s.cache.put(hash, e, epoch)
	return e, nil
}

// loadStale answers for token id when the database could not be asked (cause):
// with the cached entry if the database confirmed it within the stale-if-error
// window and no catch-up on revocations is under way, else with Unavailable. The
// entry is stored again with a fresh TTL, so an outage costs one attempt per
// token per TTL rather than one per request.
func (s *Store) loadStale(ctx context.Context, id string, hash [sha256.Size]byte, epoch uint64, cause error) (*entry, error) {
	now := s.now()
	if s.stale.CompareAndSwap(false, true) {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "tokens: database unreachable; accepting API tokens it confirmed within the stale-if-error window",
			slog.Duration("window", s.cache.stale), slog.String("err", cause.Error()))
	}
	unavailable := derrors.WithCause(derrors.Unavailable, fmt.Errorf("tokens: looking up token %s: %w", id, cause), auth.ReasonAPITokenStoreUnavailable)
	if s.catchingUp.Load() {
		return nil, unavailable
	}
	e := s.cache.getStale(hash, now)
	if e == nil {
		return nil, unavailable
	}
	if !e.expiresAt.IsZero() && !now.Before(e.expiresAt) {
		return nil, errExpired(id, e.expiresAt)
	}
	re := *e
	re.cachedAt = now
	s.cache.put(hash, &re, epoch)
	s.logger.LogAttrs(ctx, slog.LevelDebug, "tokens: accepted API token from cache while the database is unreachable",
		slog.String("token_id", id), slog.Duration("confirmed_ago", now.Sub(e.verifiedAt)))
	return &re, nil
}

// touch records that token id was used. The condition repeats the once-a-minute
// rule in the database, so replicas racing to touch one token write it once.
// Failure only costs bookkeeping, so it is logged and the request goes on.
func (s *Store) touch(ctx context.Context, id string) {
	_, err := s.pool.Exec(ctx, `UPDATE api_tokens SET last_used_at = now()
		WHERE id = $1 AND (last_used_at IS NULL OR last_used_at < now() - $2::interval)`, id, lastUsedInterval)
	if err != nil {
		s.logger.LogAttrs(ctx, slog.LevelWarn, "tokens: cannot record last use",
			slog.String("token_id", id), slog.String("err", err.Error()))
	}
}

func cloneIdentity(id *identity.Identity) *identity.Identity {
	c := *id
	c.Teams = slices.Clone(id.Teams)
	c.Scopes = slices.Clone(id.Scopes)
	return &c
}

func errExpired(id string, at time.Time) error {
	return derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("token %s expired at %s", id, at.UTC().Format(time.RFC3339)), auth.ReasonAPITokenExpired)
}
