// Package oidctest runs a real OpenID Provider (zitadel/oidc's op package) on a
// loopback TLS server for tests: discovery, JWKS with key rotation, the device
// authorization grant (RFC 8628), the authorization-code grant with PKCE (RFC
// 7636) behind a plain HTML login form a headless browser can fill in, and
// refresh tokens, issuing ID tokens that carry a "groups" claim. Tests approve
// device codes programmatically, as the user would in the browser, and can mint
// tokens with chosen defects.
package oidctest

import (
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/go-jose/go-jose/v4/jwt"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// DefaultClientID is the client id of the public client the provider registers
// for `modgate login`.
const DefaultClientID = "modgate-cli"

// Provider is a running OpenID Provider.
type Provider struct {
	t       testing.TB
	srv     *httptest.Server
	store   *storage
	down    atomic.Bool
	jwksHit atomic.Int64
	// userinfoHit counts userinfo requests.
	userinfoHit atomic.Int64

	foreignOnce sync.Once
	foreign     *signingKey
	foreignErr  error
}

// Start starts a provider on a loopback httptest TLS server and stops it when
// the test ends. Its issuer is the server's https URL.
func Start(t testing.TB) *Provider {
	t.Helper()
	store, err := newStorage(DefaultClientID)
	if err != nil {
		t.Fatalf("oidctest: %v", err)
	}
	p := &Provider{t: t, store: store}
	p.srv = httptest.NewUnstartedServer(nil)
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)

	var key [32]byte
	rand.Read(key[:])
	cfg := &op.Config{
		CryptoKey:             key,
		CodeMethodS256:        true,
		GrantTypeRefreshToken: true,
		SupportedUILocales:    []language.Tag{language.English},
		SupportedClaims:       []string{"sub", "aud", "exp", "iat", "iss", "email", "email_verified", "groups"},
		SupportedScopes:       []string{"openid", "profile", "email", "offline_access", "groups"},
		DeviceAuthorization: op.DeviceAuthorizationConfig{
			Lifetime:     5 * time.Minute,
			PollInterval: time.Second, // the least RFC 8628 clients honour
			UserFormPath: "/device",
			UserCode:     op.UserCodeBase20,
		},
	}
	provider, err := op.NewProvider(cfg, store, op.StaticIssuer(p.srv.URL))
	if err != nil {
		t.Fatalf("oidctest: creating provider: %v", err)
	}
	p.srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if p.down.Load() {
			http.Error(w, "identity provider down for the test", http.StatusServiceUnavailable)
			return
		}
		switch r.URL.Path {
		case "/keys":
			p.jwksHit.Add(1)
		case "/userinfo":
			p.userinfoHit.Add(1)
		}
		if r.URL.Path == loginPath {
			p.serveLogin(w, r)
			return
		}
		provider.ServeHTTP(w, r)
	})
	return p
}

// Issuer returns the issuer URL (https://127.0.0.1:port).
func (p *Provider) Issuer() string { return p.srv.URL }

// ClientID returns the id of the public client registered for the device flow.
func (p *Provider) ClientID() string { return p.store.client.id }

// HTTPClient returns a client that trusts the provider's TLS certificate.
func (p *Provider) HTTPClient() *http.Client { return p.srv.Client() }

// Certificate returns the provider's TLS certificate, to add to a CertPool.
func (p *Provider) Certificate() *x509.Certificate { return p.srv.Certificate() }

// CAFile writes the provider's TLS certificate as PEM to a file in a temporary
// directory and returns its path, for commands run with --ca-file or SSL_CERT_FILE.
func (p *Provider) CAFile(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "oidctest-ca.pem")
	data := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.srv.Certificate().Raw})
	if err := os.WriteFile(path, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// SetGroupsOnlyAtUserinfo keeps the groups claim out of the ID tokens issued
// from now on (true), as IdPs do that put user claims only at the userinfo
// endpoint, or puts it back (false, the default).
func (p *Provider) SetGroupsOnlyAtUserinfo(only bool) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.groupsOnlyAtUserinfo = only
}

// DeviceScopes returns the scopes of the last device authorization request,
// space-separated.
func (p *Provider) DeviceScopes() string {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.deviceScopes
}

// UserinfoRequests reports how many requests the userinfo endpoint answered.
func (p *Provider) UserinfoRequests() int64 { return p.userinfoHit.Load() }

// JWKSRequests reports how many times the JWKS endpoint was fetched.
func (p *Provider) JWKSRequests() int64 { return p.jwksHit.Load() }

// SetDown makes every endpoint answer 503 (true) or serve again (false).
func (p *Provider) SetDown(down bool) { p.down.Store(down) }

// SetTokenLifetime sets the lifetime of ID and access tokens issued from now on
// through the token endpoint (default 5 minutes).
func (p *Provider) SetTokenLifetime(d time.Duration) { p.store.client.lifetime.Store(int64(d)) }

// RotateKeys adds a new signing key and signs with it from now on. The previous
// keys stay published, as IdPs do during a rotation; RetireOldKeys removes them.
func (p *Provider) RotateKeys() {
	k, err := newSigningKey()
	if err != nil {
		p.t.Fatalf("oidctest: %v", err)
	}
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.keys = append(p.store.keys, k)
}

// RetireOldKeys unpublishes every key but the current signing key.
func (p *Provider) RetireOldKeys() {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.keys = p.store.keys[len(p.store.keys)-1:]
}

// SigningKeyID returns the kid of the current signing key.
func (p *Provider) SigningKeyID() string {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	return p.store.keys[len(p.store.keys)-1].id
}

// RegisterWebClient registers a client of the authorization-code flow that may
// be sent back to redirectURIs (exactly). With a secret it is confidential
// (client_secret_basic); without, public and bound to PKCE. Tests call it once
// they know the address of the server under test.
func (p *Provider) RegisterWebClient(id, secret string, redirectURIs ...string) {
	c := &client{id: id, web: true, secret: secret, redirectURIs: append([]string(nil), redirectURIs...)}
	c.lifetime.Store(int64(5 * time.Minute))
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.webClients[id] = c
}

// AddUser makes subject known with groups, for users who sign in through the
// login form: the form asks only for the user name, as an IdP would.
func (p *Provider) AddUser(subject string, groups []string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.users[subject] = newUser(subject, groups)
}

// ApproveDevice completes the device authorization with the given user code as
// subject, a member of groups — what the user does in the browser. The subject
// doubles as the email address when it contains "@".
func (p *Provider) ApproveDevice(userCode, subject string, groups []string) error {
	return p.store.approve(userCode, newUser(subject, groups), false)
}

// DenyDevice refuses the device authorization with the given user code.
func (p *Provider) DenyDevice(userCode string) error {
	return p.store.approve(userCode, nil, true)
}

// AutoApprove approves every device authorization started from now on as
// subject with groups, for end-to-end tests that run `modgate login` as a
// separate process and cannot see its user code before it polls.
func (p *Provider) AutoApprove(subject string, groups []string) {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	p.store.autoApprove = newUser(subject, groups)
}

// PendingUserCodes returns the user codes of device authorizations not yet
// approved or denied.
func (p *Provider) PendingUserCodes() []string {
	p.store.mu.Lock()
	defer p.store.mu.Unlock()
	var codes []string
	for _, d := range p.store.devices {
		if !d.state.Done && !d.state.Denied {
			codes = append(codes, d.userCode)
		}
	}
	return codes
}

func newUser(subject string, groups []string) *user {
	u := &user{subject: subject, groups: append([]string(nil), groups...)}
	if strings.Contains(subject, "@") {
		u.email = subject
	}
	return u
}

// TokenOption changes a token minted by IssueToken.
type TokenOption func(*tokenSpec)

type tokenSpec struct {
	audience   []string
	issuer     string
	expiry     time.Time
	notBefore  time.Time
	foreignKey bool
	claims     map[string]any
}

// WithAudience sets the aud claim (default: the client id).
func WithAudience(aud ...string) TokenOption {
	return func(s *tokenSpec) { s.audience = aud }
}

// WithIssuer sets the iss claim (default: the provider's issuer).
func WithIssuer(iss string) TokenOption { return func(s *tokenSpec) { s.issuer = iss } }

// WithExpiry sets the exp claim (default: 5 minutes from now).
func WithExpiry(t time.Time) TokenOption { return func(s *tokenSpec) { s.expiry = t } }

// WithNotBefore sets the nbf claim.
func WithNotBefore(t time.Time) TokenOption { return func(s *tokenSpec) { s.notBefore = t } }

// WithUnknownKey signs the token with a fresh key that the provider never
// publishes, under a kid the JWKS does not contain.
func WithUnknownKey() TokenOption { return func(s *tokenSpec) { s.foreignKey = true } }

// WithClaim sets any other claim (for example "email", "email_verified").
func WithClaim(name string, value any) TokenOption {
	return func(s *tokenSpec) { s.claims[name] = value }
}

// IssueToken mints an ID token for subject with the groups claim, signed with
// the provider's current key unless an option says otherwise. It is the same
// kind of token the token endpoint issues, without a device flow.
func (p *Provider) IssueToken(subject string, groups []string, opts ...TokenOption) string {
	p.t.Helper()
	now := time.Now()
	spec := tokenSpec{
		audience: []string{p.ClientID()},
		issuer:   p.Issuer(),
		expiry:   now.Add(5 * time.Minute),
		claims:   map[string]any{},
	}
	for _, o := range opts {
		o(&spec)
	}
	claims := map[string]any{
		"iss":    spec.issuer,
		"sub":    subject,
		"aud":    spec.audience,
		"exp":    jwt.NewNumericDate(spec.expiry),
		"iat":    jwt.NewNumericDate(now),
		"groups": groups,
	}
	if !spec.notBefore.IsZero() {
		claims["nbf"] = jwt.NewNumericDate(spec.notBefore)
	}
	if strings.Contains(subject, "@") {
		claims["email"] = subject
		claims["email_verified"] = true
	}
	for k, v := range spec.claims {
		claims[k] = v
	}

	var key *signingKey
	if spec.foreignKey {
		// One unpublished key per provider (RSA generation is slow), under a
		// fresh kid each time.
		p.foreignOnce.Do(func() { p.foreign, p.foreignErr = newSigningKey() })
		if p.foreignErr != nil {
			p.t.Fatalf("oidctest: %v", p.foreignErr)
		}
		key = &signingKey{id: randomID()[:16], key: p.foreign.key}
	} else {
		p.store.mu.Lock()
		key = p.store.keys[len(p.store.keys)-1]
		p.store.mu.Unlock()
	}
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key.key},
		(&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", key.id))
	if err != nil {
		p.t.Fatalf("oidctest: %v", err)
	}
	raw, err := jwt.Signed(signer).Claims(claims).Serialize()
	if err != nil {
		p.t.Fatalf("oidctest: signing token: %v", err)
	}
	return raw
}
