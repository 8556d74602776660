package main

import (
	"context"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/netrc"
	"github.com/modgate/modgate/internal/testing/oidctest"
)

// loginSession runs `modgate login` against p as the user who approves in the
// browser, and returns the files it wrote.
func loginSession(t *testing.T, p *oidctest.Provider, proxy string) (netrcPath, credPath, stdout string) {
	t.Helper()
	dir := t.TempDir()
	netrcPath = filepath.Join(dir, ".netrc")
	credPath = filepath.Join(dir, "credentials.json")
	os.WriteFile(netrcPath, []byte("machine github.com login me password ghp_keep\n"), 0o600)
	p.AutoApprove("alice@example.com", []string{"eng-payments"})
	var out, errOut strings.Builder
	err := runLogin(context.Background(), []string{
		"--issuer", p.Issuer(), "--client-id", p.ClientID(),
		"--netrc", netrcPath, "--credentials", credPath,
		"--ca-file", p.CAFile(t), "--private", "corp.example.com/*",
		proxy,
	}, &out, &errOut)
	if err != nil {
		t.Fatalf("modgate login: %v\n%s%s", err, out.String(), errOut.String())
	}
	return netrcPath, credPath, out.String()
}

func TestRunLogin(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	netrcPath, _, out := loginSession(t, p, "https://modgate.test:8443")

	for _, want := range []string{
		"confirm the code: ",
		"Signed in as alice@example.com",
		"go env -w GOPROXY=https://modgate.test:8443 GONOSUMDB=corp.example.com/* GOSUMDB=sum.golang.org",
		"go env -w GOAUTH='modgate auth;netrc'",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	data, err := os.ReadFile(netrcPath)
	if err != nil {
		t.Fatal(err)
	}
	f := netrc.Parse(data)
	if m, ok := f.Lookup("github.com"); !ok || m.Password != "ghp_keep" {
		t.Errorf("other entry lost:\n%s", data)
	}
	m, ok := f.Lookup("modgate.test:8443")
	if !ok {
		t.Fatalf("no entry for the proxy:\n%s", data)
	}
	// The token authenticates at modgate as Basic, the way the go command sends it.
	a := newTestAuthenticator(t, p)
	r, _ := http.NewRequest(http.MethodGet, "https://modgate.test:8443/github.com/x/y/@v/list", nil)
	r.RemoteAddr = "127.0.0.1:1"
	r.SetBasicAuth(m.Login, m.Password)
	id, err := a.Authenticate(r)
	if err != nil || id.Subject != "alice@example.com" || len(id.Teams) != 1 || id.Teams[0] != "payments" {
		t.Errorf("Authenticate = %+v, %v", id, err)
	}
}

func TestRunLoginHelp(t *testing.T) {
	t.Parallel()
	var out, errOut strings.Builder
	if err := runLogin(context.Background(), []string{"--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "usage: modgate login") || !strings.Contains(errOut.String(), "-client-id") {
		t.Errorf("help:\n%s", errOut.String())
	}
	if err := runLogin(context.Background(), nil, &out, &errOut); err == nil {
		t.Error("login without a proxy URL succeeded")
	}
}

func newTestAuthenticator(t *testing.T, p *oidctest.Provider) *auth.Authenticator {
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
	a, err := auth.NewAuthenticator(auth.AuthenticatorConfig{OIDC: v})
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestGoCommandUsesNetrc runs the real go command against a GOPROXY on a
// loopback port that authenticates with modgate's Authenticator, after
// `modgate login`: the go command must find the host:port entry in .netrc
// and send the token as Basic credentials.
func TestGoCommandUsesNetrc(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	a := newTestAuthenticator(t, p)
	var authed, refused atomic.Int64
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.Authenticate(r); err != nil {
			t.Logf("refused %s: %v", r.URL.Path, err)
			refused.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		authed.Add(1)
		switch r.URL.Path {
		case "/example.com/m/@v/list":
			w.Write([]byte("v1.0.0\nv1.1.0\n"))
		case "/example.com/m/@v/v1.1.0.info", "/example.com/m/@latest":
			w.Write([]byte(`{"Version":"v1.1.0","Time":"2024-01-02T03:04:05Z"}`))
		case "/example.com/m/@v/v1.1.0.mod":
			w.Write([]byte("module example.com/m\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(proxy.Close)
	netrcPath, _, _ := loginSession(t, p, proxy.URL)

	home := t.TempDir()
	caPath := filepath.Join(home, "proxy-ca.pem")
	os.WriteFile(caPath, pemCert(proxy.Certificate().Raw), 0o644)
	goList := func(netrcPath string) ([]byte, error) {
		cmd := exec.Command("go", "list", "-m", "-versions", "example.com/m@latest")
		cmd.Dir = home
		cmd.Env = append(os.Environ(),
			"HOME="+home, "NETRC="+netrcPath, "GOAUTH=netrc",
			"GOPROXY="+proxy.URL, "GONOSUMDB=*", "GOFLAGS=", "GO111MODULE=on",
			"GOMODCACHE="+t.TempDir(), "GOENV=off",
			"SSL_CERT_FILE="+caPath,
		)
		return cmd.CombinedOutput()
	}
	out, err := goList(netrcPath)
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "example.com/m v1.0.0 v1.1.0" {
		t.Errorf("go list printed %q", got)
	}
	if authed.Load() == 0 || refused.Load() != 0 {
		t.Errorf("authenticated %d, refused %d requests", authed.Load(), refused.Load())
	}

	// The port is part of the machine name: an entry for the bare host is not
	// used, and the go command prints modgate's reason.
	data, _ := os.ReadFile(netrcPath)
	hostPort := strings.TrimPrefix(proxy.URL, "https://")
	host, _, _ := strings.Cut(hostPort, ":")
	bare := filepath.Join(home, "bare.netrc")
	os.WriteFile(bare, []byte(strings.ReplaceAll(string(data), hostPort, host)), 0o600)
	out, err = goList(bare)
	if err == nil || !strings.Contains(string(out), "server response: no credentials") {
		t.Errorf("go list with a host-only .netrc entry: %v\n%s", err, out)
	}
}

func pemCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}
