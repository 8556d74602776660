// Package tokens manages modgate API tokens: long-lived, scoped, expiring and
// revocable credentials for CI and for developers without OIDC.
//
// A token's secret (mgt_<id>_<random>, see secret.go) is shown once, when it is
// created; the database keeps only its SHA-256. Store implements
// auth.TokenVerifier: it verifies a presented secret against the api_tokens table
// (migrations/0002_api_tokens.sql) and caches verified tokens in memory for a
// short time, so a busy CI job costs one query per token every CacheTTL rather
// than one per request.
//
// Revocation reaches every replica within seconds: a trigger on api_tokens
// announces each revocation (and any change that narrows a token) with
// NOTIFY modgate_api_tokens, and every Store running Listen evicts the token at
// once. When the notification channel is down, cached entries still expire after
// CacheTTL (2 s by default), after which the database is asked again. The same
// trigger logs each change in api_token_changes (migrations/0013), and a listener
// that reconnects reads every change made since it last read the log before the
// cache is trusted again, so no revocation is lost to a dropped connection.
//
// Stale-if-error: when the database cannot be asked at all, a token the database
// confirmed within Config.StaleIfError is still accepted with the subject, teams
// and scopes it had then (expiry is still enforced); a token not confirmed within
// the window is refused as unavailable (503). Revocations made while this replica
// cannot reach the database (a partition, not an outage of PostgreSQL itself)
// take effect when it reaches it again: that is the trade-off SECURITY.md states.
package tokens

import (
	"context"
	"errors"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
	"unicode"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/sync/singleflight"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
)

// Scopes an API token may be limited to. A token without scopes carries every
// right of its subject; policy receives the scopes in its input and enforces them.
const (
	ScopePull      = "pull"
	ScopePublish   = "publish"
	ScopeDelete    = "delete"
	ScopeAuditRead = "audit.read"
	ScopeAdmin     = "admin"
)

// KnownScopes returns every scope a token may carry.
func KnownScopes() []string {
	return []string{ScopePull, ScopePublish, ScopeDelete, ScopeAuditRead, ScopeAdmin}
}

// Defaults.
const (
	DefaultCacheTTL     = 2 * time.Second
	DefaultQueryTimeout = 5 * time.Second
	// DefaultStaleIfError covers a PostgreSQL restart or failover with a wide
	// margin while keeping short the time a token revoked during a partition
	// can still be used.
	DefaultStaleIfError = 30 * time.Minute
	// lastUsedInterval bounds how often last_used_at is written per token: a CI
	// job making thousands of requests should not make thousands of row updates.
	lastUsedInterval = time.Minute
)

// Config configures a Store.
type Config struct {
	// CacheTTL is how long a verified token is trusted without asking the
	// database again (default 2s). It bounds how long a revocation can go
	// unnoticed by a replica whose notification listener is down, so keep it
	// at or below 5s in production.
	CacheTTL time.Duration
	// QueryTimeout bounds each verification query (default 5s).
	QueryTimeout time.Duration
	// StaleIfError is how long after the database last confirmed a token it is
	// still accepted while the database is unreachable. Zero turns stale-if-error
	// off: every verification past CacheTTL then needs the database.
	StaleIfError time.Duration
	// Logger receives listener state changes and bookkeeping failures. Secrets
	// are never logged.
	Logger *slog.Logger
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	if c.CacheTTL < 0 {
		return errors.New("tokens: cache TTL must not be negative")
	}
	if c.QueryTimeout < 0 {
		return errors.New("tokens: query timeout must not be negative")
	}
	if c.StaleIfError < 0 {
		return errors.New("tokens: stale-if-error window must not be negative")
	}
	return nil
}

// Store creates, lists, revokes and verifies API tokens. It is safe for
// concurrent use. Run Listen in a goroutine so that revocations made through
// other replicas take effect immediately.
type Store struct {
	pool         *pgxpool.Pool
	logger       *slog.Logger
	queryTimeout time.Duration
	cache        *cache
	loads        singleflight.Group
	listening    atomic.Bool
	// catchingUp is set while a reconnected listener reads the change log: no
	// cached entry is trusted until it has (see Listen).
	catchingUp atomic.Bool
	// stale reports that the last verification found the database unreachable,
	// so that entering and leaving stale-if-error is logged once each.
	stale atomic.Bool
	// mark is where the next catch-up starts reading api_token_changes; only the
	// listener goroutine touches it.
	mark changeMark
	now  func() time.Time
}

// NewStore returns a Store over pool, whose database must be migrated.
func NewStore(pool *pgxpool.Pool, cfg Config) (*Store, error) {
	if pool == nil {
		return nil, errors.New("tokens: no database pool")
	}
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.CacheTTL == 0 {
		cfg.CacheTTL = DefaultCacheTTL
	}
	if cfg.QueryTimeout == 0 {
		cfg.QueryTimeout = DefaultQueryTimeout
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Store{
		pool:         pool,
		logger:       logger,
		queryTimeout: cfg.QueryTimeout,
		cache:        newCache(cfg.CacheTTL, cfg.StaleIfError),
		now:          time.Now,
	}, nil
}

// Token is an API token's record. It never holds the secret.
type Token struct {
	ID          string
	Subject     string
	Teams       []string
	Scopes      []string // empty: every right of the subject
	Description string
	CreatedAt   time.Time
	CreatedBy   string
	ExpiresAt   *time.Time // nil: never expires
	RevokedAt   *time.Time
	RevokedBy   string
	LastUsedAt  *time.Time
}

// State is "revoked", "expired" or "active" at now.
func (t *Token) State(now time.Time) string {
	switch {
	case t.RevokedAt != nil:
		return "revoked"
	case t.ExpiresAt != nil && !now.Before(*t.ExpiresAt):
		return "expired"
	default:
		return "active"
	}
}

// CreateRequest describes a token to create.
type CreateRequest struct {
	Subject     string        // required: whom the token authenticates as
	Teams       []string      // teams the subject acts for
	Scopes      []string      // a subset of KnownScopes; empty means unrestricted
	TTL         time.Duration // 0: never expires
	Description string        // what the token is for ("CI for payments-api")
	CreatedBy   string        // who created it, for the record
}

// Validate reports the first problem with r. Its messages are safe to show.
func (r *CreateRequest) Validate() error {
	if err := checkText("subject", r.Subject, 256, true); err != nil {
		return err
	}
	for _, t := range r.Teams {
		if err := checkText("team", t, 128, true); err != nil {
			return err
		}
		if strings.ContainsFunc(t, unicode.IsSpace) || strings.Contains(t, ",") {
			return derrors.New(derrors.InvalidArgument, "team %q must not contain spaces or commas", t)
		}
	}
	for _, s := range r.Scopes {
		if !slices.Contains(KnownScopes(), s) {
			return derrors.New(derrors.InvalidArgument, "unknown scope %q (known: %s)", s, strings.Join(KnownScopes(), ", "))
		}
	}
	if r.TTL < 0 {
		return derrors.New(derrors.InvalidArgument, "TTL must not be negative")
	}
	if err := checkText("description", r.Description, 500, false); err != nil {
		return err
	}
	return checkText("creator", r.CreatedBy, 256, false)
}

func checkText(what, s string, max int, required bool) error {
	switch {
	case required && strings.TrimSpace(s) == "":
		return derrors.New(derrors.InvalidArgument, "%s is required", what)
	case len(s) > max:
		return derrors.New(derrors.InvalidArgument, "%s longer than %d bytes", what, max)
	case strings.ContainsFunc(s, unicode.IsControl):
		return derrors.New(derrors.InvalidArgument, "%s contains control characters", what)
	case s != strings.TrimSpace(s):
		return derrors.New(derrors.InvalidArgument, "%s has leading or trailing spaces", what)
	}
	return nil
}

// sortedSet returns ss sorted without duplicates, never nil (text[] NOT NULL).
func sortedSet(ss []string) []string {
	out := slices.Clone(ss)
	slices.Sort(out)
	out = slices.Compact(out)
	if out == nil {
		out = []string{}
	}
	return out
}

const tokenColumns = `id, subject, teams, scopes, description, created_at, created_by,
	expires_at, revoked_at, revoked_by, last_used_at`

func scanToken(row pgx.Row) (Token, error) {
	var t Token
	err := row.Scan(&t.ID, &t.Subject, &t.Teams, &t.Scopes, &t.Description, &t.CreatedAt, &t.CreatedBy,
		&t.ExpiresAt, &t.RevokedAt, &t.RevokedBy, &t.LastUsedAt)
	return t, err
}

// Create stores a new token and returns its secret, which exists nowhere else:
// show it to the user once.
func (s *Store) Create(ctx context.Context, req CreateRequest) (secret string, tok Token, err error) {
	defer derrors.Wrap(&err, "tokens.Create")
	defer database.MarkUnavailable(&err, "cannot create an API token now")
	if err := req.Validate(); err != nil {
		return "", Token{}, err
	}
	id, secret, err := newSecret()
	if err != nil {
		return "", Token{}, err
	}
	hash := hashSecret(secret)
	var ttl *time.Duration
	if req.TTL > 0 {
		ttl = &req.TTL
	}
	// Expiry is computed by the database clock, like created_at, so the two agree.
	row := s.pool.QueryRow(ctx, `INSERT INTO api_tokens
		(id, secret_hash, subject, teams, scopes, description, created_by, expires_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, now() + $8::interval)
		RETURNING `+tokenColumns,
		id, hash[:], req.Subject, sortedSet(req.Teams), sortedSet(req.Scopes), req.Description, req.CreatedBy, ttl)
	tok, err = scanToken(row)
	if err != nil {
		return "", Token{}, err
	}
	return secret, tok, nil
}

// ListFilter selects tokens for List.
type ListFilter struct {
	Subject string // only this subject's tokens; empty: everyone's
	// IncludeInactive includes revoked and expired tokens.
	IncludeInactive bool
}

// List returns the tokens matching f, oldest first.
func (s *Store) List(ctx context.Context, f ListFilter) (_ []Token, err error) {
	defer derrors.Wrap(&err, "tokens.List")
	defer database.MarkUnavailable(&err, "cannot list API tokens now")
	rows, err := s.pool.Query(ctx, `SELECT `+tokenColumns+` FROM api_tokens
		WHERE ($1 = '' OR subject = $1)
		  AND ($2 OR (revoked_at IS NULL AND (expires_at IS NULL OR expires_at > now())))
		ORDER BY created_at, id`, f.Subject, f.IncludeInactive)
	if err != nil {
		return nil, err
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Token, error) { return scanToken(r) })
}

// Get returns the token with the given id, or derrors.NotFound.
func (s *Store) Get(ctx context.Context, id string) (_ Token, err error) {
	defer derrors.Wrap(&err, "tokens.Get(%q)", id)
	defer database.MarkUnavailable(&err, "cannot read API token %s now", id)
	tok, err := scanToken(s.pool.QueryRow(ctx, `SELECT `+tokenColumns+` FROM api_tokens WHERE id = $1`, id))
	if errors.Is(err, pgx.ErrNoRows) {
		return Token{}, derrors.New(derrors.NotFound, "no API token %q", id)
	}
	return tok, err
}

// Revoke revokes the token id (or the token of a whole secret, see ParseID),
// recording by as the revoker. Every replica refuses the token within seconds
// (immediately where Listen runs). Errors: derrors.InvalidArgument for an id that
// cannot exist, derrors.NotFound for an unknown one, and derrors.Conflict (with
// the token as it was revoked) when it was already revoked.
func (s *Store) Revoke(ctx context.Context, idOrSecret, by string) (_ Token, err error) {
	id, ok := ParseID(idOrSecret)
	if !ok {
		// Do not echo the argument: it may be a mangled secret.
		return Token{}, derrors.New(derrors.InvalidArgument, "not an API token id")
	}
	defer derrors.Wrap(&err, "tokens.Revoke(%q)", id)
	defer database.MarkUnavailable(&err, "cannot revoke API token %s now", id)
	if err := checkText("revoker", by, 256, false); err != nil {
		return Token{}, err
	}
	// The trigger on api_tokens sends the NOTIFY when this commits.
	tok, err := scanToken(s.pool.QueryRow(ctx, `UPDATE api_tokens SET revoked_at = now(), revoked_by = $2
		WHERE id = $1 AND revoked_at IS NULL
		RETURNING `+tokenColumns, id, by))
	if errors.Is(err, pgx.ErrNoRows) {
		tok, err = s.Get(ctx, id)
		if err != nil {
			return Token{}, err
		}
		return tok, derrors.New(derrors.Conflict, "API token %s was already revoked", id)
	}
	if err != nil {
		return Token{}, err
	}
	s.cache.evict(id)
	return tok, nil
}
