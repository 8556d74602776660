package auth

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	jose "github.com/go-jose/go-jose/v4"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// OIDCConfig configures verification of OIDC ID tokens issued by the company IdP.
type OIDCConfig struct {
	// Issuer is the IdP's issuer URL, exactly as it appears in the tokens' iss
	// claim. Endpoints and keys are discovered from
	// <Issuer>/.well-known/openid-configuration.
	Issuer string `yaml:"issuer"`
	// Audiences lists the accepted aud values; a token is accepted when its aud
	// contains any of them. Usually the client id that `modgate login` uses,
	// since the ID token's audience is that client id. Required.
	Audiences []string `yaml:"audiences"`
	// SubjectClaim names the claim that becomes Identity.Subject: "sub"
	// (default, stable but often opaque) or "email" (readable in audit and
	// policy; a token whose email_verified is false is refused).
	SubjectClaim string `yaml:"subject_claim"`
	// GroupsClaim names the claim listing the user's groups (default "groups").
	// It may be a JSON array of strings or a single string.
	GroupsClaim string `yaml:"groups_claim"`
	// GroupTeams maps IdP group names to modgate team names.
	GroupTeams map[string]string `yaml:"group_teams"`
	// TeamPrefix, when non-empty, also passes through every group that starts
	// with it as a team named by the rest ("modgate-payments" → "payments" for
	// prefix "modgate-"). Groups without the prefix are ignored unless mapped.
	TeamPrefix string `yaml:"team_prefix"`
	// SigningAlgorithms lists the accepted JWS algorithms (default RS256 and ES256).
	SigningAlgorithms []string `yaml:"signing_algorithms"`
	// UnknownKeyCooldown is the least time between two JWKS fetches caused by
	// tokens naming a key id not in the cache (default 30s). Rotation at the IdP
	// is followed at the first token signed with the new key, and at most once
	// per cooldown afterwards.
	UnknownKeyCooldown time.Duration `yaml:"unknown_key_cooldown"`
	// KeysMaxAge bounds how long fetched keys are trusted without a refetch, so
	// keys the IdP withdraws stop being accepted (default 1h).
	KeysMaxAge time.Duration `yaml:"keys_max_age"`
	// DiscoveryRetry is the least time between two discovery attempts after one
	// failed (default 5s). modgate starts while the IdP is down; OIDC requests
	// get 503 "identity provider unavailable" until discovery succeeds.
	DiscoveryRetry time.Duration `yaml:"discovery_retry"`

	// CAFile is a PEM file of CA certificates trusted, besides the system's, for
	// the IdP's TLS (discovery, JWKS, userinfo, and the console's sign-in): an
	// IdP behind a company CA needs no SSL_CERT_FILE for the whole process.
	CAFile string `yaml:"ca_file"`
	// GroupsSource says where the groups claim is read (default "auto"):
	//   - "id_token": the ID token only;
	//   - "userinfo": the IdP's userinfo endpoint only, called with the access
	//     token the client sends beside the ID token;
	//   - "auto": the ID token when it has the claim, else userinfo when the
	//     client sent an access token (IdPs that keep user claims out of ID
	//     tokens issued at the token endpoint).
	// Userinfo answers are cached per access token until the ID token expires,
	// for at most UserinfoCacheSize tokens.
	GroupsSource string `yaml:"groups_source"`

	// HTTPClient talks to the IdP (nil: a client with a 10s timeout trusting
	// the system roots and CAFile). Tests set it.
	HTTPClient *http.Client `yaml:"-"`
}

// Defaults for OIDCConfig's zero values.
const (
	DefaultGroupsClaim        = "groups"
	DefaultUnknownKeyCooldown = 30 * time.Second
	DefaultKeysMaxAge         = time.Hour
	DefaultDiscoveryRetry     = 5 * time.Second
	// UserinfoCacheSize bounds the userinfo answers kept (one per access token).
	UserinfoCacheSize = 10000
)

// Groups sources (OIDCConfig.GroupsSource).
const (
	GroupsAuto     = "auto"
	GroupsIDToken  = "id_token"
	GroupsUserinfo = "userinfo"
)

var supportedAlgs = []string{"RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384", "PS512", "EdDSA"}

// Validate reports the first problem with c.
func (c *OIDCConfig) Validate() error {
	if c.Issuer == "" {
		return errors.New("oidc: issuer is required")
	}
	u, err := url.Parse(c.Issuer)
	if err != nil || u.Host == "" || (u.Scheme != "https" && u.Scheme != "http") {
		return fmt.Errorf("oidc: issuer %q is not an absolute http(s) URL", c.Issuer)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		return fmt.Errorf("oidc: issuer %q must use https", c.Issuer)
	}
	if len(c.Audiences) == 0 {
		return errors.New("oidc: at least one audience (the login client id) is required")
	}
	for _, a := range c.Audiences {
		if strings.TrimSpace(a) == "" {
			return errors.New("oidc: empty audience")
		}
	}
	switch c.SubjectClaim {
	case "", "sub", "email":
	default:
		return fmt.Errorf("oidc: subject_claim %q: want sub or email", c.SubjectClaim)
	}
	for g, t := range c.GroupTeams {
		if g == "" || t == "" {
			return fmt.Errorf("oidc: group_teams entry %q: %q: group and team must be non-empty", g, t)
		}
	}
	for _, a := range c.SigningAlgorithms {
		if !slices.Contains(supportedAlgs, a) {
			return fmt.Errorf("oidc: unsupported signing algorithm %q", a)
		}
	}
	switch c.GroupsSource {
	case "", GroupsAuto, GroupsIDToken, GroupsUserinfo:
	default:
		return fmt.Errorf("oidc: groups_source %q: want auto, id_token or userinfo", c.GroupsSource)
	}
	if c.UnknownKeyCooldown < 0 || c.KeysMaxAge < 0 || c.DiscoveryRetry < 0 {
		return errors.New("oidc: durations must not be negative")
	}
	return nil
}

func isLoopbackHost(h string) bool {
	return h == "localhost" || h == "127.0.0.1" || h == "::1"
}

// OIDCVerifier verifies OIDC ID tokens and maps them to identities.
// It is safe for concurrent use.
type OIDCVerifier struct {
	cfg    OIDCConfig
	algs   []string
	client *http.Client
	logger *slog.Logger
	now    func() time.Time

	ready    atomic.Pointer[oidcState]
	userinfo *userinfoCache

	mu          sync.Mutex // serialises discovery
	lastAttempt time.Time
	lastErr     error
}

type oidcState struct {
	verifier *oidc.IDTokenVerifier
	keys     *remoteKeys
	// userinfoURL is the discovered userinfo_endpoint; empty if the IdP has none.
	userinfoURL string
}

// NewOIDCVerifier returns a verifier for cfg. It does not contact the IdP:
// discovery happens at the first token (or Discover), and is retried, so modgate
// starts while the IdP is briefly down.
func NewOIDCVerifier(cfg OIDCConfig, logger *slog.Logger) (*OIDCVerifier, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if cfg.SubjectClaim == "" {
		cfg.SubjectClaim = "sub"
	}
	if cfg.GroupsClaim == "" {
		cfg.GroupsClaim = DefaultGroupsClaim
	}
	if cfg.UnknownKeyCooldown == 0 {
		cfg.UnknownKeyCooldown = DefaultUnknownKeyCooldown
	}
	if cfg.KeysMaxAge == 0 {
		cfg.KeysMaxAge = DefaultKeysMaxAge
	}
	if cfg.DiscoveryRetry == 0 {
		cfg.DiscoveryRetry = DefaultDiscoveryRetry
	}
	if cfg.GroupsSource == "" {
		cfg.GroupsSource = GroupsAuto
	}
	algs := cfg.SigningAlgorithms
	if len(algs) == 0 {
		algs = []string{"RS256", "ES256"}
	}
	client := cfg.HTTPClient
	if client == nil {
		var err error
		if client, err = IdPHTTPClient(cfg.CAFile); err != nil {
			return nil, err
		}
	}
	return &OIDCVerifier{cfg: cfg, algs: algs, client: client, logger: logger, now: time.Now,
		userinfo: newUserinfoCache(UserinfoCacheSize)}, nil
}

// IdPHTTPClient returns a client for talking to the IdP: a 10s timeout, and
// the system roots plus the certificates in caFile when it is set.
func IdPHTTPClient(caFile string) (*http.Client, error) {
	client := &http.Client{Timeout: 10 * time.Second}
	if caFile == "" {
		return client, nil
	}
	pemData, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("oidc: ca_file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pemData) {
		return nil, fmt.Errorf("oidc: ca_file %s: no PEM certificates", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	client.Transport = tr
	return client, nil
}

// HTTPClient returns the client the verifier talks to the IdP with, for other
// parts of modgate that talk to the same IdP (the console's sign-in).
func (v *OIDCVerifier) HTTPClient() *http.Client { return v.client }

// Discover fetches the issuer's discovery document now, if it has not been
// fetched yet. Call it at startup to warm up, and from readiness checks; a
// failure is not fatal, Verify retries.
func (v *OIDCVerifier) Discover(ctx context.Context) error {
	_, err := v.state(ctx)
	return err
}

// KeyFetches reports how many times the JWKS has been fetched (for tests and metrics).
func (v *OIDCVerifier) KeyFetches() int64 {
	if s := v.ready.Load(); s != nil {
		return s.keys.fetches.Load()
	}
	return 0
}

func (v *OIDCVerifier) state(ctx context.Context) (*oidcState, error) {
	if s := v.ready.Load(); s != nil {
		return s, nil
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	if s := v.ready.Load(); s != nil {
		return s, nil
	}
	if v.lastErr != nil && v.now().Sub(v.lastAttempt) < v.cfg.DiscoveryRetry {
		return nil, v.lastErr
	}
	v.lastAttempt = v.now()
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, v.client), 10*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, v.cfg.Issuer)
	if err != nil {
		v.lastErr = derrors.WithCause(derrors.Unavailable, fmt.Errorf("oidc discovery for %s: %w", v.cfg.Issuer, err), ReasonIdPUnavailable)
		v.logger.Warn("auth: OIDC discovery failed; will retry", "issuer", v.cfg.Issuer, "err", err)
		return nil, v.lastErr
	}
	var doc struct {
		JWKSURI     string `json:"jwks_uri"`
		UserinfoURL string `json:"userinfo_endpoint"`
	}
	if err := p.Claims(&doc); err != nil || doc.JWKSURI == "" {
		v.lastErr = derrors.WithCause(derrors.Unavailable, fmt.Errorf("oidc discovery for %s: no jwks_uri", v.cfg.Issuer), ReasonIdPUnavailable)
		return nil, v.lastErr
	}
	jalgs := make([]jose.SignatureAlgorithm, len(v.algs))
	for i, a := range v.algs {
		jalgs[i] = jose.SignatureAlgorithm(a)
	}
	keys := &remoteKeys{
		url:      doc.JWKSURI,
		client:   v.client,
		algs:     jalgs,
		cooldown: v.cfg.UnknownKeyCooldown,
		maxAge:   v.cfg.KeysMaxAge,
		logger:   v.logger,
		now:      v.now,
	}
	s := &oidcState{
		keys:        keys,
		userinfoURL: doc.UserinfoURL,
		verifier: oidc.NewVerifier(v.cfg.Issuer, keys, &oidc.Config{
			SkipClientIDCheck:    true, // we accept a list of audiences; checked in Verify
			SupportedSigningAlgs: v.algs,
			Now:                  v.now,
		}),
	}
	v.ready.Store(s)
	v.lastErr = nil
	v.logger.Info("auth: OIDC issuer discovered", "issuer", v.cfg.Issuer, "jwks_uri", doc.JWKSURI)
	return s, nil
}

// Verify checks raw as an ID token from the configured issuer: signature by a
// key in the issuer's JWKS, issuer, audience, expiry; and maps its claims to an
// identity. Refusals are derrors.Unauthenticated with one of the Reason*
// messages; an unreachable IdP is derrors.Unavailable.
func (v *OIDCVerifier) Verify(ctx context.Context, raw string) (*identity.Identity, error) {
	s, err := v.state(ctx)
	if err != nil {
		return nil, err
	}
	tok, err := s.verifier.Verify(ctx, raw)
	if err != nil {
		return nil, classifyOIDCError(err)
	}
	if !slices.ContainsFunc(tok.Audience, func(a string) bool { return slices.Contains(v.cfg.Audiences, a) }) {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("aud %q not in %q", tok.Audience, v.cfg.Audiences), ReasonTokenAudience)
	}
	var claims map[string]any
	if err := tok.Claims(&claims); err != nil {
		return nil, derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenMalformed)
	}
	subject := tok.Subject
	if v.cfg.SubjectClaim == "email" {
		email, _ := claims["email"].(string)
		if verified, ok := claims["email_verified"].(bool); ok && !verified {
			return nil, derrors.New(derrors.Unauthenticated, ReasonEmailNotVerified)
		}
		subject = email
	}
	if subject == "" {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("claim %q empty", v.cfg.SubjectClaim), ReasonTokenNoSubject)
	}
	groups, err := v.groups(ctx, s, tok, claims)
	if err != nil {
		return nil, err
	}
	return &identity.Identity{
		Subject: subject,
		Teams:   v.teams(groups),
		Method:  identity.MethodOIDC,
	}, nil
}

// teams maps the groups claim to sorted, de-duplicated team names.
func (v *OIDCVerifier) teams(claim any) []string {
	var groups []string
	switch g := claim.(type) {
	case string:
		groups = []string{g}
	case []any:
		for _, e := range g {
			if s, ok := e.(string); ok {
				groups = append(groups, s)
			}
		}
	}
	set := map[string]bool{}
	for _, g := range groups {
		if t, ok := v.cfg.GroupTeams[g]; ok {
			set[t] = true
		}
		if v.cfg.TeamPrefix != "" {
			if t, ok := strings.CutPrefix(g, v.cfg.TeamPrefix); ok && t != "" {
				set[t] = true
			}
		}
	}
	teams := make([]string, 0, len(set))
	for t := range set {
		teams = append(teams, t)
	}
	sort.Strings(teams)
	return teams
}

// classifyOIDCError turns go-oidc's and remoteKeys' errors into public reasons.
// go-oidc verifies the signature before looking at any claim, so a reason about
// a claim is only ever given for a token the IdP really signed. go-oidc formats
// the key set's error with %v, losing the chain, so remoteKeys' sentinels are
// recognised by their text.
func classifyOIDCError(err error) error {
	var expired *oidc.TokenExpiredError
	msg := err.Error()
	switch {
	case errors.As(err, &expired):
		return derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenExpired)
	case errors.Is(err, errUnknownKey) || strings.Contains(msg, errUnknownKey.Error()):
		return derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenUnknownKey)
	case errors.Is(err, errBadSignature) || strings.Contains(msg, errBadSignature.Error()):
		return derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenSignature)
	case errors.Is(err, errJWKSUnavailable) || strings.Contains(msg, errJWKSUnavailable.Error()):
		return derrors.WithCause(derrors.Unavailable, err, ReasonIdPUnavailable)
	case strings.Contains(msg, "issued by a different provider"):
		return derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenIssuer)
	case strings.Contains(msg, "before the nbf"):
		return derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenNotYetValid)
	default:
		return derrors.WithCause(derrors.Unauthenticated, err, ReasonTokenMalformed)
	}
}
