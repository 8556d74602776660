package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// APITokenPrefix starts every modgate API token. Secrets with this prefix go to
// the TokenVerifier; everything else is treated as an OIDC ID token. The prefix
// also lets secret scanners recognise leaked modgate tokens.
const APITokenPrefix = "mgt_"

// TokenVerifier verifies modgate API tokens (secrets starting with
// APITokenPrefix). It is implemented by the API token store.
//
// VerifyToken returns the token's identity (Method identity.MethodToken, TokenID
// set, Scopes as granted), or an error. Refusals must be derrors.Unauthenticated
// with a public reason such as ReasonAPITokenUnknown, ReasonAPITokenRevoked or
// ReasonAPITokenExpired; an unreachable store is derrors.Unavailable. Errors must
// not contain the secret: they are logged.
type TokenVerifier interface {
	VerifyToken(ctx context.Context, secret string) (*identity.Identity, error)
}

// IDTokenVerifier verifies OIDC ID tokens; *OIDCVerifier implements it.
type IDTokenVerifier interface {
	Verify(ctx context.Context, raw string) (*identity.Identity, error)
}

// AuthenticatorConfig configures an Authenticator.
type AuthenticatorConfig struct {
	// OIDC verifies ID tokens; nil refuses them.
	OIDC IDTokenVerifier
	// Tokens verifies modgate API tokens; nil refuses them.
	Tokens TokenVerifier
	// FailureBurst is how many failed authentications one source (client IP,
	// or IPv6 /64) may make in a row before it is refused with 429 (default 20).
	FailureBurst int
	// FailureRefill is the time to earn back one failure (default 6s: 10 per
	// minute sustained).
	FailureRefill time.Duration
	// Logger receives one line per failure (reason, source) and per success at
	// debug level. Secrets are never logged.
	Logger *slog.Logger
	// OnFailure, if set, is called once per refused credential with its kind
	// ("oidc", "api-token", or "" when malformed) and its public reason, one of
	// the Reason* constants or "other": few enough values to be metric labels.
	OnFailure func(kind, reason string)
}

// Validate reports the first problem with c.
func (c *AuthenticatorConfig) Validate() error {
	if c.OIDC == nil && c.Tokens == nil {
		return errors.New("auth: neither OIDC nor API tokens configured")
	}
	if c.FailureBurst < 0 || c.FailureRefill < 0 {
		return errors.New("auth: failure limits must not be negative")
	}
	return nil
}

// Authenticator establishes identities from a request's Authorization header.
//
// It looks at headers only. Client certificates are the TLS layer's business:
// the server asks the certificate authenticator first and calls Authenticate
// only when the connection presented no certificate identity, so a CI machine
// with a certificate is never slowed by the failure limiter.
type Authenticator struct {
	oidc    IDTokenVerifier
	tokens  TokenVerifier
	logger  *slog.Logger
	limiter *failureLimiter
	now     func() time.Time
	onFail  func(kind, reason string)
}

// NewAuthenticator returns an Authenticator for cfg.
func NewAuthenticator(cfg AuthenticatorConfig) (*Authenticator, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.FailureBurst == 0 {
		cfg.FailureBurst = 20
	}
	if cfg.FailureRefill == 0 {
		cfg.FailureRefill = 6 * time.Second
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &Authenticator{
		oidc:    cfg.OIDC,
		tokens:  cfg.Tokens,
		logger:  logger,
		limiter: newFailureLimiter(rate.Every(cfg.FailureRefill), cfg.FailureBurst),
		now:     time.Now,
		onFail:  cfg.OnFailure,
	}, nil
}

// Authenticate returns the identity the request's credentials prove.
//
// Credentials come from "Authorization: Bearer <token>" or HTTP Basic with the
// token as password (see credential). Errors:
//   - derrors.Unauthenticated with a Reason* public message: no, malformed or
//     refused credentials;
//   - derrors.RateLimited: this source failed too often recently; requests that
//     present credentials are refused without being verified until it cools down;
//   - derrors.Unavailable: the IdP or token store cannot be reached.
//
// Only refusals of presented credentials count as failures; requests without
// credentials and outages do not.
func (a *Authenticator) Authenticate(r *http.Request) (*identity.Identity, error) {
	ctx := r.Context()
	src := sourceKey(r.RemoteAddr)
	secret, accessToken, err := credential(r)
	if errors.Is(err, errNoCredentials) {
		return nil, derrors.New(derrors.Unauthenticated, ReasonNoCredentials)
	}
	if wait, blocked := a.limiter.blocked(src, a.now()); blocked {
		a.logger.LogAttrs(ctx, slog.LevelWarn, "auth: source rate limited", slog.String("source", src))
		return nil, derrors.New(derrors.RateLimited, "%s; retry in %ds", ReasonTooManyFailures, int(math.Ceil(wait.Seconds())))
	}
	if err != nil {
		err = derrors.WithCause(derrors.Unauthenticated, err, ReasonMalformed)
		a.fail(ctx, src, "", err)
		return nil, err
	}

	var id *identity.Identity
	kind := "oidc"
	if strings.HasPrefix(secret, APITokenPrefix) {
		kind = "api-token"
		if a.tokens == nil {
			err = derrors.New(derrors.Unauthenticated, ReasonAPITokensDisabled)
		} else {
			id, err = a.tokens.VerifyToken(ctx, secret)
			if err == nil && id != nil && id.Method == "" {
				id.Method = identity.MethodToken
			}
		}
	} else {
		if a.oidc == nil {
			err = derrors.New(derrors.Unauthenticated, ReasonOIDCDisabled)
		} else {
			id, err = a.oidc.Verify(WithAccessToken(ctx, accessToken), secret)
		}
	}
	if err == nil && id == nil {
		err = fmt.Errorf("auth: %s verifier returned no identity", kind)
	}
	if err != nil {
		if errors.Is(err, derrors.Unauthenticated) {
			a.fail(ctx, src, kind, err)
		} else {
			a.logger.LogAttrs(ctx, slog.LevelError, "auth: cannot verify credentials",
				slog.String("source", src), slog.String("kind", kind), slog.String("err", err.Error()))
		}
		return nil, err
	}
	a.logger.LogAttrs(ctx, slog.LevelDebug, "auth: authenticated",
		slog.String("source", src), slog.String("kind", kind),
		slog.String("subject", id.Subject), slog.Any("teams", id.Teams))
	return id, nil
}

func (a *Authenticator) fail(ctx context.Context, src, kind string, err error) {
	a.limiter.fail(src, a.now())
	reason := derrors.PublicMessage(err)
	a.logger.LogAttrs(ctx, slog.LevelInfo, "auth: authentication failed",
		slog.String("source", src), slog.String("kind", kind),
		slog.String("reason", reason), slog.String("err", err.Error()))
	if a.onFail != nil {
		a.onFail(kind, FailureReason(reason))
	}
}

// FailureReason returns reason when it is one of the fixed Reason* constants,
// else "other", so a verifier's free-form message never becomes a metric label.
func FailureReason(reason string) string {
	switch reason {
	case ReasonMalformed, ReasonTokenMalformed, ReasonTokenExpired, ReasonTokenNotYetValid,
		ReasonTokenAudience, ReasonTokenIssuer, ReasonTokenUnknownKey, ReasonTokenSignature,
		ReasonTokenNoSubject, ReasonEmailNotVerified, ReasonAPITokensDisabled, ReasonOIDCDisabled,
		ReasonAPITokenUnknown, ReasonAPITokenRevoked, ReasonAPITokenExpired, ReasonAPITokenMalformed,
		ReasonCertRequired, ReasonExpired, ReasonNotYetValid, ReasonUnknownCA, ReasonNoClientAuth,
		ReasonRevoked, ReasonInvalid, ReasonNoCertSubject:
		return reason
	}
	return "other"
}

// sourceKey names the client a failure is charged to: its IP address, or for
// IPv6 its /64, since one host commonly holds a whole /64. The server sets
// RemoteAddr to the real client when it sits behind a trusted load balancer.
func sourceKey(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		host = remoteAddr
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	if ip.Is4() {
		return host // ParseAddr takes dotted decimal only in its canonical form
	}
	ip = ip.Unmap()
	if ip.Is4() {
		return ip.String()
	}
	p, _ := ip.WithZone("").Prefix(64)
	return p.String()
}

// failureLimiter is a token bucket per source, spent only by failures.
type failureLimiter struct {
	limit rate.Limit
	burst int

	mu        sync.Mutex
	sources   map[string]*rate.Limiter
	lastSweep time.Time
}

func newFailureLimiter(limit rate.Limit, burst int) *failureLimiter {
	return &failureLimiter{limit: limit, burst: burst, sources: make(map[string]*rate.Limiter)}
}

// blocked reports whether src has no failures left, and how long until it has one.
func (f *failureLimiter) blocked(src string, now time.Time) (time.Duration, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lim, ok := f.sources[src]
	if !ok {
		return 0, false
	}
	tokens := lim.TokensAt(now)
	if tokens >= 1 {
		return 0, false
	}
	return time.Duration((1 - tokens) / float64(f.limit) * float64(time.Second)), true
}

func (f *failureLimiter) fail(src string, now time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	lim, ok := f.sources[src]
	if !ok {
		lim = rate.NewLimiter(f.limit, f.burst)
		f.sources[src] = lim
	}
	lim.AllowN(now, 1)
	f.sweep(now)
}

// sweep forgets sources whose bucket has refilled, so the map stays as small as
// the set of recently failing clients. Called with mu held.
func (f *failureLimiter) sweep(now time.Time) {
	if len(f.sources) < 1024 || now.Sub(f.lastSweep) < time.Minute {
		return
	}
	f.lastSweep = now
	for src, lim := range f.sources {
		if lim.TokensAt(now) >= float64(f.burst) {
			delete(f.sources, src)
		}
	}
}
