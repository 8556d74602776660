package auth

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/testing/oidctest"
)

// apiTokens stands in for the PostgreSQL token store, which lands later; it
// implements the TokenVerifier contract exactly as documented.
type apiTokens map[string]string // secret → state: "ok", "revoked", "down"

func (a apiTokens) VerifyToken(ctx context.Context, secret string) (*identity.Identity, error) {
	switch a[secret] {
	case "ok":
		return &identity.Identity{Subject: "ci-bot", Teams: []string{"platform"}, TokenID: "tok-1", Scopes: []string{"pull"}}, nil
	case "revoked":
		return nil, derrors.New(derrors.Unauthenticated, ReasonAPITokenRevoked)
	case "down":
		return nil, derrors.WithCause(derrors.Unavailable, errors.New("connection refused"), "token store unavailable")
	default:
		return nil, derrors.New(derrors.Unauthenticated, ReasonAPITokenUnknown)
	}
}

func request(remoteAddr string, header ...string) *http.Request {
	r := httptest.NewRequest(http.MethodGet, "https://modgate.example/github.com/x/y/@v/list", nil)
	r.RemoteAddr = remoteAddr
	for i := 0; i+1 < len(header); i += 2 {
		r.Header.Add(header[i], header[i+1])
	}
	return r
}

func basic(login, password string) string {
	r := &http.Request{Header: http.Header{}}
	r.SetBasicAuth(login, password)
	return r.Header.Get("Authorization")
}

func newAuthenticator(t *testing.T, p *oidctest.Provider, logger *slog.Logger, edit func(*AuthenticatorConfig)) *Authenticator {
	t.Helper()
	cfg := AuthenticatorConfig{
		OIDC:   newVerifier(t, p, nil),
		Tokens: apiTokens{"mgt_good": "ok", "mgt_revoked": "revoked", "mgt_down": "down"},
		Logger: logger,
	}
	if edit != nil {
		edit(&cfg)
	}
	a, err := NewAuthenticator(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestAuthenticate(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	a := newAuthenticator(t, p, nil, nil)
	noTokens := newAuthenticator(t, p, nil, func(c *AuthenticatorConfig) { c.Tokens = nil })
	noOIDC := newAuthenticator(t, p, nil, func(c *AuthenticatorConfig) { c.OIDC = nil })
	idTok := p.IssueToken("u-7", []string{"eng-payments"})
	expired := p.IssueToken("u-7", nil, oidctest.WithExpiry(time.Now().Add(-time.Hour)))

	tests := []struct {
		name    string
		a       *Authenticator
		header  []string
		subject string
		method  identity.Method
		kind    error
		reason  string
	}{
		{name: "ok/bearer-id-token", header: []string{"Authorization", "Bearer " + idTok}, subject: "u-7", method: identity.MethodOIDC},
		{name: "ok/bearer-lowercase-scheme", header: []string{"Authorization", "bearer " + idTok}, subject: "u-7", method: identity.MethodOIDC},
		{name: "ok/basic-netrc", header: []string{"Authorization", basic("modgate", idTok)}, subject: "u-7", method: identity.MethodOIDC},
		{name: "ok/basic-any-login", header: []string{"Authorization", basic("someone-else", idTok)}, subject: "u-7", method: identity.MethodOIDC},
		{name: "ok/api-token-bearer", header: []string{"Authorization", "Bearer mgt_good"}, subject: "ci-bot", method: identity.MethodToken},
		{name: "ok/api-token-basic", header: []string{"Authorization", basic("ci", "mgt_good")}, subject: "ci-bot", method: identity.MethodToken},
		{name: "fail/no-credentials", kind: derrors.Unauthenticated, reason: ReasonNoCredentials},
		{name: "fail/unknown-scheme", header: []string{"Authorization", "Digest " + idTok}, kind: derrors.Unauthenticated, reason: ReasonMalformed},
		{name: "fail/bearer-empty", header: []string{"Authorization", "Bearer "}, kind: derrors.Unauthenticated, reason: ReasonMalformed},
		{name: "fail/basic-no-password", header: []string{"Authorization", basic("modgate", "")}, kind: derrors.Unauthenticated, reason: ReasonMalformed},
		{name: "fail/basic-not-base64", header: []string{"Authorization", "Basic %%%"}, kind: derrors.Unauthenticated, reason: ReasonMalformed},
		{name: "fail/two-headers", header: []string{"Authorization", "Bearer " + idTok, "Authorization", "Bearer mgt_good"}, kind: derrors.Unauthenticated, reason: ReasonMalformed},
		{name: "fail/expired-basic", header: []string{"Authorization", basic("modgate", expired)}, kind: derrors.Unauthenticated, reason: ReasonTokenExpired},
		{name: "fail/api-token-revoked", header: []string{"Authorization", "Bearer mgt_revoked"}, kind: derrors.Unauthenticated, reason: ReasonAPITokenRevoked},
		{name: "fail/api-token-unknown", header: []string{"Authorization", "Bearer mgt_nope"}, kind: derrors.Unauthenticated, reason: ReasonAPITokenUnknown},
		{name: "fail/api-token-store-down", header: []string{"Authorization", "Bearer mgt_down"}, kind: derrors.Unavailable, reason: "token store unavailable"},
		{name: "fail/api-tokens-disabled", a: noTokens, header: []string{"Authorization", "Bearer mgt_good"}, kind: derrors.Unauthenticated, reason: ReasonAPITokensDisabled},
		{name: "fail/oidc-disabled", a: noOIDC, header: []string{"Authorization", "Bearer " + idTok}, kind: derrors.Unauthenticated, reason: ReasonOIDCDisabled},
		{name: "ok/api-token-without-oidc", a: noOIDC, header: []string{"Authorization", "Bearer mgt_good"}, subject: "ci-bot", method: identity.MethodToken},
		{name: "fail/password-not-a-token", header: []string{"Authorization", basic("alice", "hunter2")}, kind: derrors.Unauthenticated, reason: ReasonTokenMalformed},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			au := a
			if tt.a != nil {
				au = tt.a
			}
			// A distinct source per case, so failures do not add up to a 429.
			id, err := au.Authenticate(request("192.0.2."+strconv.Itoa(i+1)+":5555", tt.header...))
			if tt.kind != nil {
				wantRefusal(t, err, tt.kind, tt.reason)
				return
			}
			if err != nil {
				t.Fatalf("Authenticate: %v", err)
			}
			if id.Subject != tt.subject || id.Method != tt.method {
				t.Errorf("got %+v, want subject %q method %q", id, tt.subject, tt.method)
			}
		})
	}
}

func TestAuthenticateRateLimit(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	a := newAuthenticator(t, p, nil, func(c *AuthenticatorConfig) {
		c.FailureBurst = 3
		c.FailureRefill = time.Minute
	})
	clock := newFakeClock()
	a.now = clock.Now
	good := "Bearer " + p.IssueToken("u-1", []string{"eng-payments"}, oidctest.WithExpiry(time.Now().Add(time.Hour)))
	bad := "Bearer " + p.IssueToken("u-1", nil, oidctest.WithAudience("elsewhere"))

	// Requests without credentials never count.
	for range 10 {
		_, err := a.Authenticate(request("198.51.100.7:1000"))
		wantRefusal(t, err, derrors.Unauthenticated, ReasonNoCredentials)
	}
	for range 3 {
		_, err := a.Authenticate(request("198.51.100.7:1000", "Authorization", bad))
		wantRefusal(t, err, derrors.Unauthenticated, ReasonTokenAudience)
	}
	// The source is now refused, even with a good token, before verification.
	_, err := a.Authenticate(request("198.51.100.7:2000", "Authorization", good))
	if !errors.Is(err, derrors.RateLimited) || derrors.Status(err) != http.StatusTooManyRequests {
		t.Fatalf("4th request: got %v, want 429", err)
	}
	if msg := derrors.PublicMessage(err); msg != ReasonTooManyFailures+"; retry in 60s" {
		t.Errorf("public message %q", msg)
	}
	// Other sources are unaffected.
	if _, err := a.Authenticate(request("198.51.100.8:1000", "Authorization", good)); err != nil {
		t.Fatalf("other source: %v", err)
	}
	// After one refill interval the source gets one more attempt.
	clock.Advance(time.Minute)
	if _, err := a.Authenticate(request("198.51.100.7:1000", "Authorization", good)); err != nil {
		t.Fatalf("after refill: %v", err)
	}

	// IPv6 sources are charged per /64.
	for range 3 {
		a.Authenticate(request("[2001:db8:1:2::1]:443", "Authorization", bad))
	}
	_, err = a.Authenticate(request("[2001:db8:1:2::99]:443", "Authorization", good))
	if !errors.Is(err, derrors.RateLimited) {
		t.Fatalf("same /64: got %v, want rate limited", err)
	}
	if _, err := a.Authenticate(request("[2001:db8:1:3::1]:443", "Authorization", good)); err != nil {
		t.Fatalf("other /64: %v", err)
	}
}

// TestSecretsNeverLogged runs succeeding and failing authentications through a
// debug-level logger and checks that no secret reaches the log or the error text.
func TestSecretsNeverLogged(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	var buf bytes.Buffer
	logger := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a := newAuthenticator(t, p, logger, func(c *AuthenticatorConfig) {
		c.OIDC = newVerifier(t, p, func(oc *OIDCConfig) {})
		c.FailureBurst = 4
	})
	// Give the verifier the same logger, so discovery and JWKS logs are covered.
	a.oidc.(*OIDCVerifier).logger = logger

	secrets := []string{
		p.IssueToken("u-1", []string{"eng-payments"}),
		p.IssueToken("u-1", nil, oidctest.WithExpiry(time.Now().Add(-time.Minute))),
		p.IssueToken("u-1", nil, oidctest.WithAudience("x")),
		p.IssueToken("u-1", nil, oidctest.WithUnknownKey()),
		p.IssueToken("u-1", nil, oidctest.WithIssuer("https://evil.example")),
		"mgt_good", "mgt_revoked", "mgt_nope_secret_value", "mgt_down",
		"hunter2-password", "eyJhbGciOiJSUzI1NiJ9.garbage.sig",
	}
	var errs []error
	for _, s := range secrets {
		for _, h := range []string{"Bearer " + s, basic("modgate", s), basic(s, s)} {
			_, err := a.Authenticate(request("203.0.113.5:4000", "Authorization", h))
			errs = append(errs, err)
		}
	}
	if !slices.ContainsFunc(errs, func(err error) bool { return err == nil }) {
		t.Fatal("no authentication succeeded; the test would prove nothing")
	}
	if !slices.ContainsFunc(errs, func(err error) bool { return errors.Is(err, derrors.RateLimited) }) {
		t.Fatal("no request was rate limited; the rate-limit log line is not covered")
	}
	log := buf.String()
	if !strings.Contains(log, "authentication failed") || !strings.Contains(log, "authenticated") {
		t.Fatalf("log lacks the expected lines:\n%s", log)
	}
	for _, s := range secrets {
		// Check the secret and its signature part alone: a log that printed a
		// token's signature would leak as much.
		parts := []string{s}
		if i := strings.LastIndex(s, "."); i >= 0 && len(s)-i > 8 {
			parts = append(parts, s[i+1:])
		}
		for _, part := range parts {
			if strings.Contains(log, part) {
				t.Errorf("log contains secret %.12q...", part)
			}
			for _, err := range errs {
				if err != nil && strings.Contains(err.Error(), part) {
					t.Errorf("error %q contains the secret", err)
				}
			}
		}
	}
}

// OnFailure hears every refused credential, with a reason from the fixed
// vocabulary; missing credentials and outages are not failures.
func TestAuthenticateOnFailure(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	var got []string
	a := newAuthenticator(t, p, nil, func(c *AuthenticatorConfig) {
		c.OnFailure = func(kind, reason string) { got = append(got, kind+": "+reason) }
	})
	for i, h := range [][]string{
		nil,
		{"Authorization", "Bearer mgt_revoked"},
		{"Authorization", "Bearer mgt_down"},
		{"Authorization", "Digest x"},
		{"Authorization", "Bearer mgt_good"},
	} {
		a.Authenticate(request("192.0.2."+strconv.Itoa(i+1)+":5555", h...))
	}
	want := []string{"api-token: " + ReasonAPITokenRevoked, ": " + ReasonMalformed}
	if !slices.Equal(got, want) {
		t.Errorf("OnFailure calls = %q, want %q", got, want)
	}
	if r := FailureReason("key 1234 not found in jwks"); r != "other" {
		t.Errorf("FailureReason(free text) = %q, want other", r)
	}
}
