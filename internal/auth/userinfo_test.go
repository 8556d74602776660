package auth

import (
	"context"
	"encoding/base64"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/testing/oidctest"
)

// deviceLogin signs user in at p through the device flow and returns the
// stored credential (ID token and access token).
func deviceLogin(t *testing.T, p *oidctest.Provider, user string, groups []string) login.Credential {
	t.Helper()
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := login.Login(ctx, login.Config{
		ProxyURL: "https://modgate.test", Issuer: p.Issuer(), ClientID: p.ClientID(),
		NetrcPath: filepath.Join(dir, "netrc"), CredentialsPath: filepath.Join(dir, "creds.json"),
		HTTPClient: p.HTTPClient(),
		Prompt: func(_ context.Context, pr login.Prompt) error {
			return p.ApproveDevice(pr.UserCode, user, groups)
		},
	})
	if err != nil {
		t.Fatalf("device login: %v", err)
	}
	creds, err := login.LoadCredentials(filepath.Join(dir, "creds.json"))
	if err != nil || len(creds) != 1 || creds[0].AccessToken == "" {
		t.Fatalf("credentials %v %+v", err, creds)
	}
	return creds[0]
}

// Groups from userinfo when the ID token has none, bound to the ID token's
// subject, cached per access token.
func TestGroupsFromUserinfo(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	p.SetGroupsOnlyAtUserinfo(true)
	alice := deviceLogin(t, p, "alice", []string{"eng-payments"})
	bob := deviceLogin(t, p, "bob", []string{"eng-search"})
	if strings.Contains(decodeJWTPayload(t, alice.IDToken), "groups") {
		t.Fatal("the ID token carries groups; the test needs them only at userinfo")
	}
	withAT := func(at string) context.Context { return WithAccessToken(context.Background(), at) }

	tests := []struct {
		name      string
		source    string
		ctx       context.Context
		idToken   string
		wantTeams []string
		wantErr   string
	}{
		{name: "ok/auto-userinfo", ctx: withAT(alice.AccessToken), idToken: alice.IDToken, wantTeams: []string{"payments"}},
		{name: "ok/auto-no-access-token-no-teams", ctx: context.Background(), idToken: alice.IDToken, wantTeams: []string{}},
		{name: "ok/userinfo", source: GroupsUserinfo, ctx: withAT(bob.AccessToken), idToken: bob.IDToken, wantTeams: []string{"search"}},
		{name: "ok/id-token-only-ignores-userinfo", source: GroupsIDToken, ctx: withAT(alice.AccessToken), idToken: alice.IDToken, wantTeams: []string{}},
		{name: "fail/userinfo-needs-access-token", source: GroupsUserinfo, ctx: context.Background(), idToken: alice.IDToken, wantErr: ReasonUserinfoNoAccessToken},
		{name: "fail/another-users-access-token", ctx: withAT(bob.AccessToken), idToken: alice.IDToken, wantErr: ReasonUserinfoSubject},
		{name: "fail/access-token-refused", ctx: withAT("not-an-access-token"), idToken: alice.IDToken, wantErr: ReasonUserinfoRefused},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, p, func(c *OIDCConfig) { c.GroupsSource = tt.source })
			id, err := v.Verify(tt.ctx, tt.idToken)
			if tt.wantErr != "" {
				wantRefusal(t, err, derrors.Unauthenticated, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatalf("Verify: %v", err)
			}
			if !slices.Equal(id.Teams, tt.wantTeams) {
				t.Errorf("teams %q, want %q", id.Teams, tt.wantTeams)
			}
		})
	}

	t.Run("ok/cached-per-token", func(t *testing.T) {
		v := newVerifier(t, p, nil)
		before := p.UserinfoRequests()
		for range 5 {
			if _, err := v.Verify(withAT(alice.AccessToken), alice.IDToken); err != nil {
				t.Fatal(err)
			}
		}
		if got := p.UserinfoRequests() - before; got != 1 {
			t.Errorf("%d userinfo requests for one token, want 1", got)
		}
	})

	// Through the Authenticator: the access token is the Basic login, as the
	// go command sends the .netrc entry modgate login writes.
	t.Run("ok/basic-login-is-access-token", func(t *testing.T) {
		a, err := NewAuthenticator(AuthenticatorConfig{OIDC: newVerifier(t, p, nil)})
		if err != nil {
			t.Fatal(err)
		}
		for _, tt := range []struct {
			login string
			want  []string
		}{{alice.AccessToken, []string{"payments"}}, {NetrcLogin, []string{}}} {
			r, _ := http.NewRequest(http.MethodGet, "https://modgate.test/x/@v/list", nil)
			r.RemoteAddr = "127.0.0.1:1"
			r.Header.Set("Authorization", "Basic "+base64.StdEncoding.EncodeToString([]byte(tt.login+":"+alice.IDToken)))
			id, err := a.Authenticate(r)
			if err != nil || !slices.Equal(id.Teams, tt.want) {
				t.Errorf("login %.10s...: %v %+v, want teams %q", tt.login, err, id, tt.want)
			}
		}
	})
}

func TestUserinfoCacheBounded(t *testing.T) {
	t.Parallel()
	c := newUserinfoCache(2)
	now := time.Now()
	c.put("a", userinfoEntry{expires: now.Add(time.Hour)}, now)
	c.put("b", userinfoEntry{expires: now.Add(-time.Second)}, now) // expired
	c.put("c", userinfoEntry{expires: now.Add(time.Hour)}, now)    // evicts the expired b
	if _, ok := c.entries["b"]; ok || c.Len() != 2 {
		t.Errorf("entries %v", c.entries)
	}
	c.put("d", userinfoEntry{expires: now.Add(time.Hour)}, now) // full of live ones: one goes
	if c.Len() != 2 {
		t.Errorf("%d entries, want at most 2", c.Len())
	}
}

// auth.oidc.ca_file alone makes the IdP's TLS certificate trusted.
func TestCAFile(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	for _, tt := range []struct {
		name, caFile string
		wantErr      bool
	}{
		{name: "ok/ca-file", caFile: p.CAFile(t)},
		{name: "fail/system-roots-only", wantErr: true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			v := newVerifier(t, p, func(c *OIDCConfig) { c.HTTPClient, c.CAFile = nil, tt.caFile })
			err := v.Discover(context.Background())
			if (err != nil) != tt.wantErr {
				t.Fatalf("Discover: %v, want error %v", err, tt.wantErr)
			}
		})
	}
	if _, err := NewOIDCVerifier(OIDCConfig{Issuer: p.Issuer(), Audiences: []string{"x"}, CAFile: filepath.Join(t.TempDir(), "missing.pem")}, nil); err == nil {
		t.Error("a missing ca_file was accepted")
	}
}

func decodeJWTPayload(t *testing.T, raw string) string {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT")
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
