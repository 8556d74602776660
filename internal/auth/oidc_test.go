package auth

import (
	"context"
	"errors"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/testing/oidctest"
)

// newVerifier returns a verifier for p's issuer and client id, changed by edit.
func newVerifier(t *testing.T, p *oidctest.Provider, edit func(*OIDCConfig)) *OIDCVerifier {
	t.Helper()
	cfg := OIDCConfig{
		Issuer:     p.Issuer(),
		Audiences:  []string{p.ClientID()},
		GroupTeams: map[string]string{"eng-payments": "payments", "eng-search": "search"},
		HTTPClient: p.HTTPClient(),
	}
	if edit != nil {
		edit(&cfg)
	}
	v, err := NewOIDCVerifier(cfg, nil)
	if err != nil {
		t.Fatalf("NewOIDCVerifier: %v", err)
	}
	return v
}

// wantRefusal fails t unless err has kind and public message reason.
func wantRefusal(t *testing.T, err error, kind error, reason string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v %q", kind, reason)
	}
	if !errors.Is(err, kind) || derrors.PublicMessage(err) != reason {
		t.Fatalf("got %v (public %q), want kind %v reason %q", err, derrors.PublicMessage(err), kind, reason)
	}
}

func TestOIDCVerify(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	other := oidctest.Start(t) // a real IdP modgate does not trust
	v := newVerifier(t, p, func(c *OIDCConfig) {
		c.Audiences = []string{p.ClientID(), "modgate-api"}
		c.TeamPrefix = "modgate-"
	})
	vEmail := newVerifier(t, p, func(c *OIDCConfig) { c.SubjectClaim = "email" })
	ctx := context.Background()
	hour := time.Hour

	tests := []struct {
		name   string
		v      *OIDCVerifier
		token  string
		want   *identity.Identity
		reason string // public reason when refused
		kind   error
	}{
		{
			name:  "ok/groups-mapped-and-prefixed",
			v:     v,
			token: p.IssueToken("u-123", []string{"eng-payments", "modgate-infra", "everyone", "modgate-"}),
			want:  &identity.Identity{Subject: "u-123", Teams: []string{"infra", "payments"}, Method: identity.MethodOIDC},
		},
		{
			name:  "ok/no-groups",
			v:     v,
			token: p.IssueToken("u-9", nil),
			want:  &identity.Identity{Subject: "u-9", Teams: []string{}, Method: identity.MethodOIDC},
		},
		{
			name:  "ok/second-audience",
			v:     v,
			token: p.IssueToken("u-1", []string{"eng-search"}, oidctest.WithAudience("something-else", "modgate-api")),
			want:  &identity.Identity{Subject: "u-1", Teams: []string{"search"}, Method: identity.MethodOIDC},
		},
		{
			name:  "ok/email-subject",
			v:     vEmail,
			token: p.IssueToken("alice@example.com", []string{"eng-search"}),
			want:  &identity.Identity{Subject: "alice@example.com", Teams: []string{"search"}, Method: identity.MethodOIDC},
		},
		{
			name:   "fail/email-unverified",
			v:      vEmail,
			token:  p.IssueToken("bob@example.com", nil, oidctest.WithClaim("email_verified", false)),
			kind:   derrors.Unauthenticated,
			reason: ReasonEmailNotVerified,
		},
		{
			name:   "fail/email-missing",
			v:      vEmail,
			token:  p.IssueToken("u-5", nil),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenNoSubject,
		},
		{
			name:   "fail/expired",
			v:      v,
			token:  p.IssueToken("u-1", nil, oidctest.WithExpiry(time.Now().Add(-time.Minute))),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenExpired,
		},
		{
			name:   "fail/not-yet-valid",
			v:      v,
			token:  p.IssueToken("u-1", nil, oidctest.WithNotBefore(time.Now().Add(hour)), oidctest.WithExpiry(time.Now().Add(2*hour))),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenNotYetValid,
		},
		{
			name:   "fail/audience",
			v:      v,
			token:  p.IssueToken("u-1", nil, oidctest.WithAudience("another-app")),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenAudience,
		},
		{
			name:   "fail/issuer",
			v:      v,
			token:  p.IssueToken("u-1", nil, oidctest.WithIssuer("https://evil.example")),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenIssuer,
		},
		{
			name:   "fail/unknown-key",
			v:      v,
			token:  p.IssueToken("u-1", nil, oidctest.WithUnknownKey()),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenUnknownKey,
		},
		{
			name:   "fail/other-idp",
			v:      v,
			token:  other.IssueToken("u-1", nil),
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenUnknownKey,
		},
		{
			name:   "fail/malformed",
			v:      v,
			token:  "not-a-jwt",
			kind:   derrors.Unauthenticated,
			reason: ReasonTokenMalformed,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.v.Verify(ctx, tt.token)
			if tt.want == nil {
				wantRefusal(t, err, tt.kind, tt.reason)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if got.Subject != tt.want.Subject || got.Method != tt.want.Method || !slices.Equal(got.Teams, tt.want.Teams) {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestOIDCForgedSignature(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	v := newVerifier(t, p, nil)
	tok := p.IssueToken("u-1", nil)
	// Swap in the signature of another token signed by the same key: the kid
	// matches but the signature does not.
	other := p.IssueToken("u-2", nil)
	forged := tok[:lastDot(tok)] + other[lastDot(other):]
	_, err := v.Verify(context.Background(), forged)
	wantRefusal(t, err, derrors.Unauthenticated, ReasonTokenSignature)
}

func lastDot(s string) int {
	for i := len(s) - 1; i >= 0; i-- {
		if s[i] == '.' {
			return i
		}
	}
	return -1
}

// TestOIDCKeyRotation checks that a rotation at the IdP is followed at the first
// token signed with the new key, even with a long unknown-kid cooldown, and that
// keys the IdP withdraws stop being trusted after KeysMaxAge.
func TestOIDCKeyRotation(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	clock := newFakeClock()
	v := newVerifier(t, p, func(c *OIDCConfig) {
		c.UnknownKeyCooldown = time.Hour
		c.KeysMaxAge = 10 * time.Minute
	})
	v.now = clock.Now
	ctx := context.Background()

	// The fake clock runs ahead of the IdP's; give the tokens room.
	exp := oidctest.WithExpiry(time.Now().Add(time.Hour))
	oldTok := p.IssueToken("u-1", nil, exp)
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("before rotation: %v", err)
	}
	p.RotateKeys()
	newTok := p.IssueToken("u-1", nil, exp)
	if _, err := v.Verify(ctx, newTok); err != nil {
		t.Fatalf("token signed with the rotated-in key: %v", err)
	}
	if _, err := v.Verify(ctx, oldTok); err != nil {
		t.Fatalf("token signed with the still-published old key: %v", err)
	}
	if got := v.KeyFetches(); got != 2 {
		t.Errorf("JWKS fetched %d times, want 2 (initial, rotation)", got)
	}

	p.RetireOldKeys()
	clock.Advance(11 * time.Minute)
	_, err := v.Verify(ctx, oldTok)
	wantRefusal(t, err, derrors.Unauthenticated, ReasonTokenUnknownKey)
	if _, err := v.Verify(ctx, newTok); err != nil {
		t.Fatalf("current key after retirement: %v", err)
	}
}

// TestOIDCUnknownKeyCooldown checks that tokens naming unknown key ids cannot
// make modgate hammer the IdP's JWKS endpoint.
func TestOIDCUnknownKeyCooldown(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	clock := newFakeClock()
	v := newVerifier(t, p, func(c *OIDCConfig) { c.UnknownKeyCooldown = 30 * time.Second })
	v.now = clock.Now
	ctx := context.Background()

	if _, err := v.Verify(ctx, p.IssueToken("u-1", nil)); err != nil {
		t.Fatal(err)
	}
	before := p.JWKSRequests()
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := v.Verify(ctx, p.IssueToken("u-1", nil, oidctest.WithUnknownKey()))
			if derrors.PublicMessage(err) != ReasonTokenUnknownKey {
				t.Errorf("got %v, want %q", err, ReasonTokenUnknownKey)
			}
		}()
	}
	wg.Wait()
	if got := p.JWKSRequests() - before; got != 1 {
		t.Errorf("50 unknown-kid tokens caused %d JWKS fetches, want 1", got)
	}
	// Valid tokens keep working during the cooldown.
	if _, err := v.Verify(ctx, p.IssueToken("u-1", nil)); err != nil {
		t.Fatal(err)
	}
	clock.Advance(31 * time.Second)
	v.Verify(ctx, p.IssueToken("u-1", nil, oidctest.WithUnknownKey()))
	if got := p.JWKSRequests() - before; got != 2 {
		t.Errorf("after the cooldown: %d JWKS fetches, want 2", got)
	}
}

// TestOIDCDiscoveryRetry checks that a verifier created while the IdP is down
// answers 503 and starts working once the IdP is back, without a restart.
func TestOIDCDiscoveryRetry(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	p.SetDown(true)
	v := newVerifier(t, p, func(c *OIDCConfig) { c.DiscoveryRetry = 50 * time.Millisecond })
	ctx := context.Background()
	tok := p.IssueToken("u-1", []string{"eng-payments"})

	_, err := v.Verify(ctx, tok)
	wantRefusal(t, err, derrors.Unavailable, ReasonIdPUnavailable)
	if err := v.Discover(ctx); err == nil {
		t.Fatal("Discover succeeded while the IdP is down")
	}
	p.SetDown(false)
	// Within the retry interval the last failure is remembered, not retried.
	time.Sleep(60 * time.Millisecond)
	id, err := v.Verify(ctx, tok)
	if err != nil {
		t.Fatalf("after the IdP came back: %v", err)
	}
	if !slices.Equal(id.Teams, []string{"payments"}) {
		t.Errorf("teams = %v", id.Teams)
	}
}

func TestOIDCConfigValidate(t *testing.T) {
	t.Parallel()
	ok := OIDCConfig{Issuer: "https://idp.example.com", Audiences: []string{"modgate-cli"}}
	tests := []struct {
		name string
		edit func(*OIDCConfig)
		ok   bool
	}{
		{"ok/minimal", func(*OIDCConfig) {}, true},
		{"ok/email", func(c *OIDCConfig) { c.SubjectClaim = "email" }, true},
		{"ok/http-loopback", func(c *OIDCConfig) { c.Issuer = "http://127.0.0.1:5556" }, true},
		{"fail/no-issuer", func(c *OIDCConfig) { c.Issuer = "" }, false},
		{"fail/relative-issuer", func(c *OIDCConfig) { c.Issuer = "idp.example.com" }, false},
		{"fail/http-issuer", func(c *OIDCConfig) { c.Issuer = "http://idp.example.com" }, false},
		{"fail/no-audience", func(c *OIDCConfig) { c.Audiences = nil }, false},
		{"fail/empty-audience", func(c *OIDCConfig) { c.Audiences = []string{""} }, false},
		{"fail/subject-claim", func(c *OIDCConfig) { c.SubjectClaim = "name" }, false},
		{"fail/empty-team", func(c *OIDCConfig) { c.GroupTeams = map[string]string{"g": ""} }, false},
		{"fail/alg", func(c *OIDCConfig) { c.SigningAlgorithms = []string{"HS256"} }, false},
		{"fail/negative", func(c *OIDCConfig) { c.UnknownKeyCooldown = -time.Second }, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := ok
			tt.edit(&c)
			if err := c.Validate(); (err == nil) != tt.ok {
				t.Errorf("Validate() = %v, want ok=%v", err, tt.ok)
			}
		})
	}
}

type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Now()} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
