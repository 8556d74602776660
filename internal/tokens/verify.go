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
	if e := s.cache.get(hash, now); e != nil {
		// Expiry is checked on every hit, so a cached token stops working at
		// its expiry, not up to a TTL later.
		if !e.expiresAt.IsZero() && !now.Before(e.expiresAt) {
			return nil, errExpired(id, e.expiresAt)
		}
		return cloneIdentity(&e.id), nil
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
		return nil, derrors.WithCause(derrors.Unavailable, fmt.Errorf("tokens: looking up token %s: %w", id, err), auth.ReasonAPITokenStoreUnavailable)
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
		cachedAt: now,
	}
	if expiresAt != nil {
		e.expiresAt = *expiresAt
	}
	s.cache.put(hash, e, epoch)
	return e, nil
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
