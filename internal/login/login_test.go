package login

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/netrc"
	"github.com/modgate/modgate/internal/testing/oidctest"
)

const existingNetrc = `# personal
machine github.com
	login me
	password ghp_secret

machine modgate.test:8443 login modgate password OLD-TOKEN
default login anonymous password guest
`

func verifierFor(t *testing.T, p *oidctest.Provider) *auth.OIDCVerifier {
	t.Helper()
	v, err := auth.NewOIDCVerifier(auth.OIDCConfig{
		Issuer:     p.Issuer(),
		Audiences:  []string{p.ClientID()},
		GroupTeams: map[string]string{"eng-payments": "payments"},
		HTTPClient: p.HTTPClient(),
	}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestLoginDeviceFlow(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	dir := t.TempDir()
	netrcPath := filepath.Join(dir, ".netrc")
	credPath := filepath.Join(dir, "config", "modgate", "credentials.json")
	if err := os.WriteFile(netrcPath, []byte(existingNetrc), 0o644); err != nil {
		t.Fatal(err)
	}
	var out strings.Builder
	var prompted Prompt
	res, err := Login(context.Background(), Config{
		ProxyURL:        "https://modgate.test:8443",
		Issuer:          p.Issuer(),
		ClientID:        p.ClientID(),
		NetrcPath:       netrcPath,
		CredentialsPath: credPath,
		HTTPClient:      p.HTTPClient(),
		Out:             &out,
		Prompt: func(ctx context.Context, pr Prompt) error {
			prompted = pr
			if err := PrintPrompt(&out, pr); err != nil {
				return err
			}
			// The user opens the URL and approves.
			return p.ApproveDevice(pr.UserCode, "alice@example.com", []string{"eng-payments", "staff"})
		},
	})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if prompted.UserCode == "" || !strings.HasPrefix(prompted.VerificationURI, p.Issuer()) {
		t.Errorf("prompt = %+v", prompted)
	}
	if !strings.Contains(out.String(), "confirm the code: "+prompted.UserCode) {
		t.Errorf("prompt output:\n%s", out.String())
	}
	if res.Subject != "alice@example.com" || res.Machine != "modgate.test:8443" || !res.HasRefreshToken {
		t.Errorf("result = %+v", res)
	}

	// .netrc: 0600, other entries intact, the go command finds the new token.
	fi, err := os.Stat(netrcPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf(".netrc mode %v, want 0600", fi.Mode().Perm())
	}
	data, _ := os.ReadFile(netrcPath)
	f := netrc.Parse(data)
	gh, ok := f.Lookup("github.com")
	if !ok || gh.Login != "me" || gh.Password != "ghp_secret" {
		t.Errorf("github.com entry lost: %+v", gh)
	}
	if !strings.HasPrefix(string(data), "# personal\nmachine github.com\n\tlogin me\n\tpassword ghp_secret\n\n") ||
		!strings.HasSuffix(string(data), "\ndefault login anonymous password guest\n") {
		t.Errorf("surrounding text changed:\n%s", data)
	}
	m, ok := f.Lookup("modgate.test:8443")
	if !ok || m.Login == NetrcLogin || m.Login == "" || m.Password == "OLD-TOKEN" {
		t.Fatalf("proxy entry = %+v", m)
	}
	if strings.Count(string(data), "modgate.test:8443") != 1 {
		t.Errorf("entry duplicated:\n%s", data)
	}

	// The stored token is one modgate accepts, with the user's teams.
	id, err := verifierFor(t, p).Verify(context.Background(), m.Password)
	if err != nil {
		t.Fatalf("modgate refuses the .netrc token: %v", err)
	}
	if id.Subject != "alice@example.com" || !slices.Equal(id.Teams, []string{"payments"}) {
		t.Errorf("identity = %+v", id)
	}

	// Credentials for the GOAUTH helper: 0600, same token, a refresh token.
	fi, err = os.Stat(credPath)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("credentials mode %v, want 0600", fi.Mode().Perm())
	}
	creds, err := LoadCredentials(credPath)
	if err != nil || len(creds) != 1 {
		t.Fatalf("credentials: %v %+v", err, creds)
	}
	c := creds[0]
	if c.IDToken != m.Password || c.RefreshToken == "" || c.Proxy != "https://modgate.test:8443" {
		t.Errorf("credential = %+v", c)
	}

	// Refresh: a forced refresh yields a new, valid ID token and rotates the
	// refresh token; the old refresh token is spent.
	fresh, err := FreshToken(context.Background(), credPath, c, p.HTTPClient(), true, time.Now())
	if err != nil {
		t.Fatalf("FreshToken: %v", err)
	}
	if fresh.IDToken == c.IDToken || fresh.RefreshToken == c.RefreshToken {
		t.Errorf("refresh did not renew the tokens")
	}
	if _, err := verifierFor(t, p).Verify(context.Background(), fresh.IDToken); err != nil {
		t.Errorf("refreshed token refused: %v", err)
	}
	saved, _ := LoadCredentials(credPath)
	if len(saved) != 1 || saved[0].IDToken != fresh.IDToken {
		t.Errorf("refreshed credential not saved")
	}
	// A second process still holding the spent refresh token picks up the
	// token the first one saved instead of failing.
	again, err := FreshToken(context.Background(), credPath, c, p.HTTPClient(), true, time.Now())
	if err != nil || again.IDToken != fresh.IDToken {
		t.Errorf("concurrent refresh: %v", err)
	}
	// Not expiring: no refresh.
	same, err := FreshToken(context.Background(), credPath, fresh, p.HTTPClient(), false, time.Now())
	if err != nil || same.IDToken != fresh.IDToken {
		t.Errorf("unforced refresh of a valid token: %v", err)
	}
}

func TestLoginDenied(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	dir := t.TempDir()
	netrcPath := filepath.Join(dir, ".netrc")
	_, err := Login(context.Background(), Config{
		ProxyURL:        "https://modgate.test",
		Issuer:          p.Issuer(),
		ClientID:        p.ClientID(),
		NetrcPath:       netrcPath,
		CredentialsPath: filepath.Join(dir, "creds.json"),
		HTTPClient:      p.HTTPClient(),
		Prompt: func(ctx context.Context, pr Prompt) error {
			return p.DenyDevice(pr.UserCode)
		},
	})
	if err == nil {
		t.Fatal("Login succeeded after the user denied it")
	}
	if _, err := os.Stat(netrcPath); !errors.Is(err, os.ErrNotExist) {
		t.Errorf(".netrc written after a denied login: %v", err)
	}
}

// TestLoginServerInfo checks `modgate login https://proxy` with no other
// flags: the proxy names its IdP and client id.
func TestLoginServerInfo(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != DiscoveryPath {
			http.NotFound(w, r)
			return
		}
		json.NewEncoder(w).Encode(ServerInfo{Issuer: p.Issuer(), ClientID: p.ClientID()})
	}))
	t.Cleanup(proxy.Close)
	pool := x509.NewCertPool()
	pool.AddCert(p.Certificate())
	pool.AddCert(proxy.Certificate())
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}

	p.AutoApprove("bob", []string{"eng-payments"})
	dir := t.TempDir()
	res, err := Login(context.Background(), Config{
		ProxyURL:        proxy.URL,
		NetrcPath:       filepath.Join(dir, ".netrc"),
		CredentialsPath: filepath.Join(dir, "creds.json"),
		HTTPClient:      client,
	})
	if err != nil {
		t.Fatalf("Login: %v", err)
	}
	if res.Subject != "bob" || res.Machine != strings.TrimPrefix(proxy.URL, "https://") {
		t.Errorf("result = %+v", res)
	}
}

func TestMachine(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"https://proxy.corp.example":              "proxy.corp.example",
		"https://proxy.corp.example:8443":         "proxy.corp.example:8443",
		"https://proxy.corp.example:8443/goproxy": "proxy.corp.example:8443",
		"https://127.0.0.1:41234":                 "127.0.0.1:41234",
		"https://[::1]:8443":                      "[::1]:8443",
	} {
		if got, err := Machine(in); err != nil || got != want {
			t.Errorf("Machine(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
}

func TestForURL(t *testing.T) {
	t.Parallel()
	creds := []Credential{{Proxy: "https://a.example:8443"}, {Proxy: "https://a.example:8443/team"}, {Proxy: "https://b.example"}}
	tests := []struct{ url, want string }{
		{"https://a.example:8443/github.com/x/@v/list", "https://a.example:8443"},
		{"https://a.example:8443/team/mod/@v/list", "https://a.example:8443/team"},
		{"https://a.example:8443", "https://a.example:8443"},
		{"https://a.example:84430/x", ""},
		{"https://b.example/x", "https://b.example"},
		{"https://c.example/x", ""},
	}
	for _, tt := range tests {
		got, ok := ForURL(creds, tt.url)
		if (tt.want == "") == ok || (ok && got.Proxy != tt.want) {
			t.Errorf("ForURL(%q) = %q %v, want %q", tt.url, got.Proxy, ok, tt.want)
		}
	}
}
