package nodeop_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/testing/nodeop"
)

// The harness's promises: device flow approved over HTTP, an ID token without
// groups, the groups at userinfo, refresh with rotation, key rotation.
func TestProvider(t *testing.T) {
	p := nodeop.Start(t, nodeop.Options{IDTokenTTL: time.Minute})
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	dir := t.TempDir()
	credPath := filepath.Join(dir, "creds.json")
	res, err := login.Login(ctx, login.Config{
		ProxyURL:        "https://modgate.test:8443",
		Issuer:          p.Issuer(),
		ClientID:        p.ClientID(),
		Scopes:          []string{"openid", "offline_access", "groups"},
		NetrcPath:       filepath.Join(dir, ".netrc"),
		CredentialsPath: credPath,
		HTTPClient:      p.HTTPClient(),
		Prompt: func(ctx context.Context, pr login.Prompt) error {
			return p.ApproveDevice(ctx, pr.VerificationURIComplete, "alice@corp.example", []string{"team-payments"})
		},
	})
	if err != nil {
		t.Fatalf("device login: %v", err)
	}
	if res.Subject != "alice@corp.example" || !res.HasRefreshToken {
		t.Fatalf("result %+v", res)
	}
	if got := p.State().DeviceScopes; got != "openid offline_access groups" {
		t.Errorf("device authorization scopes %q", got)
	}
	creds, _ := login.LoadCredentials(credPath)
	c := creds[0]
	if claims := jwtClaims(t, c.IDToken); claims["groups"] != nil {
		t.Errorf("the ID token carries groups: %v", claims)
	}
	if exp := time.Until(c.Expiry); exp > time.Minute+5*time.Second {
		t.Errorf("ID token lifetime %v, want 1m", exp)
	}

	// userinfo has the groups.
	octx := oidc.ClientContext(ctx, p.HTTPClient())
	prov, err := oidc.NewProvider(octx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	ui, err := prov.UserInfo(octx, oauth2.StaticTokenSource(&oauth2.Token{AccessToken: c.AccessToken}))
	if err != nil {
		t.Fatalf("userinfo: %v", err)
	}
	var uc struct{ Groups []string }
	ui.Claims(&uc)
	if !slices.Equal(uc.Groups, []string{"team-payments"}) || ui.Subject != "alice@corp.example" {
		t.Errorf("userinfo %+v groups %v", ui, uc.Groups)
	}

	// Rotation: the refreshed token is signed with the new key, and the
	// refresh token was rotated.
	oldKid := p.State().KeyID
	newKid := p.RotateKeys()
	if newKid == oldKid {
		t.Fatal("rotation kept the kid")
	}
	fresh, err := login.FreshToken(ctx, credPath, c, p.HTTPClient(), true, time.Now())
	if err != nil {
		t.Fatalf("refresh after rotation: %v", err)
	}
	if fresh.RefreshToken == c.RefreshToken {
		t.Error("refresh token not rotated")
	}
	if kid := jwtHeader(t, fresh.IDToken)["kid"]; kid != newKid {
		t.Errorf("refreshed ID token kid %v, want %s", kid, newKid)
	}
	if _, err := prov.VerifierContext(octx, &oidc.Config{ClientID: p.ClientID()}).Verify(octx, fresh.IDToken); err != nil {
		t.Errorf("refreshed token does not verify: %v", err)
	}
}

func jwtPart(t *testing.T, raw string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwtClaims(t *testing.T, raw string) map[string]any { return jwtPart(t, raw, 1) }
func jwtHeader(t *testing.T, raw string) map[string]any { return jwtPart(t, raw, 0) }
