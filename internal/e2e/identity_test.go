package e2e

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/agent"
	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// pki is a test CA with modgate's server certificate for 127.0.0.1, on disk.
type pki struct {
	CA                    *certgen.CA
	Dir                   string
	CAFile, CertFile, Key string
}

func newPKI(t *testing.T) *pki {
	t.Helper()
	ca, err := certgen.NewCA("modgate test CA")
	if err != nil {
		t.Fatal(err)
	}
	srv, err := ca.IssueServer([]string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &pki{CA: ca, Dir: dir, CAFile: filepath.Join(dir, "ca.pem"), CertFile: filepath.Join(dir, "server.pem"), Key: filepath.Join(dir, "server.key")}
	writeFile(t, p.CAFile, ca.CertPEM)
	writeFile(t, p.CertFile, srv.CertPEM)
	writeFile(t, p.Key, srv.KeyPEM)
	return p
}

// clientFiles issues a client certificate and writes it next to the CA.
func (p *pki) clientFiles(t *testing.T, cn string, opts ...certgen.Option) (certFile, keyFile string) {
	t.Helper()
	leaf, err := p.CA.IssueClient(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.Dir, cn+".pem"), filepath.Join(p.Dir, cn+".key")
	writeFile(t, certFile, leaf.CertPEM)
	writeFile(t, keyFile, leaf.KeyPEM)
	return certFile, keyFile
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

// startApp runs a full modgate (internal/app, as `modgate serve` builds it) over TLS
// on a loopback port and returns its https URL.
func startApp(t *testing.T, cfg config.Config) string {
	t.Helper()
	return startAppLogging(t, cfg, io.Discard)
}

// startAppLogging is startApp with modgate's JSON log, at debug level, going to logs.
func startAppLogging(t *testing.T, cfg config.Config, logs io.Writer) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return startAppOnLogging(t, cfg, ln, logs)
}

// startAppOn is startApp on a listener the test opened, for configurations that
// must name modgate's own address (the console's OIDC redirect URL).
func startAppOn(t *testing.T, cfg config.Config, ln net.Listener) string {
	t.Helper()
	return startAppOnLogging(t, cfg, ln, io.Discard)
}

func startAppOnLogging(t *testing.T, cfg config.Config, ln net.Listener, logs io.Writer) string {
	t.Helper()
	if cfg.Cache.Dir == config.Defaults().Cache.Dir {
		cfg.Cache.Dir = t.TempDir() // and with it the audit spool: one per app
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
	if err != nil {
		ln.Close()
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
	})
	scheme := "http"
	if cfg.TLSEnabled() {
		scheme = "https"
	}
	return scheme + "://" + ln.Addr().String()
}

func tlsConfigFor(p *pki, upstream string) config.Config {
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream.Proxies = upstream
	cfg.Upstream.RetryBackoff = config.Duration(time.Millisecond)
	cfg.SumDB.Names = []string{testSumDB}
	cfg.SumDB.Verify = false // the fixtures mount no checksum database
	cfg.TLS = auth.TLSConfig{CertFile: p.CertFile, KeyFile: p.Key}
	cfg.Policy.Dir = "../../policy"
	return cfg
}

func netrcFor(proxyURL, password string) []byte {
	host := strings.TrimPrefix(proxyURL, "https://")
	return []byte(fmt.Sprintf("machine %s\nlogin modgate\npassword %s\n", host, password))
}

// The developer's session: OIDC tokens in ~/.netrc, the real go command over TLS.
func TestOIDCTokensFromNetrc(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	idp := oidctest.Start(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer:     idp.Issuer(),
		Audiences:  []string{idp.ClientID()},
		GroupTeams: map[string]string{"payments-devs": "payments"},
		HTTPClient: idp.HTTPClient(),
	}
	cfg.Auth.LoginClientID = idp.ClientID()
	url := startApp(t, cfg)

	valid := idp.IssueToken("alice", []string{"payments-devs"})
	tests := []struct {
		name    string
		token   string // empty: no .netrc at all
		wantErr string
	}{
		{name: "ok/valid-token", token: valid},
		{name: "fail/no-credentials", wantErr: "server response: no credentials"},
		{name: "fail/wrong-audience", token: idp.IssueToken("alice", nil, oidctest.WithAudience("someone-else")), wantErr: "server response: token audience not accepted"},
		{name: "fail/expired", token: idp.IssueToken("alice", nil, oidctest.WithExpiry(time.Now().Add(-time.Minute))), wantErr: "server response: token expired"},
		{name: "fail/unknown-key", token: idp.IssueToken("alice", nil, oidctest.WithUnknownKey()), wantErr: "server response: token signed by unknown key"},
		{name: "fail/garbage", token: "not-a-token", wantErr: "server response: token malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
			if tt.token != "" {
				writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, tt.token))
			}
			_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("go mod download: %v\n%s", err, stderr)
				}
				return
			}
			if err == nil || !strings.Contains(stderr, tt.wantErr) || !strings.Contains(stderr, "401 Unauthorized") {
				t.Fatalf("err=%v; want 401 printing %q; stderr:\n%s", err, tt.wantErr, stderr)
			}
		})
	}

	t.Run("ok/modgate-login-device-flow", func(t *testing.T) {
		g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
		netrcPath := filepath.Join(g.Home, ".netrc")
		writeFile(t, netrcPath, []byte("machine other.example login bob password keep-me\n"))
		idp.AutoApprove("carol", []string{"payments-devs"})
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		var out strings.Builder
		// Issuer and client id come from the proxy's /.well-known/modgate-login.
		_, err := login.Login(ctx, login.Config{
			ProxyURL:        url,
			NetrcPath:       netrcPath,
			CredentialsPath: filepath.Join(g.Home, "creds.json"),
			HTTPClient:      clientTrusting(t, p.CAFile, idp.CAFile(t)),
			Out:             &out,
		})
		if err != nil {
			t.Fatalf("modgate login: %v\n%s", err, out.String())
		}
		st, _ := os.Stat(netrcPath)
		if st.Mode().Perm() != 0o600 {
			t.Errorf(".netrc mode %v, want 0600", st.Mode().Perm())
		}
		b, _ := os.ReadFile(netrcPath)
		if !strings.Contains(string(b), "machine other.example login bob password keep-me") {
			t.Errorf("login dropped another .netrc entry:\n%s", b)
		}
		if advice := login.Advice(url, "corp.example/*"); !strings.Contains(advice, "go env -w GOPROXY="+url) {
			t.Errorf("advice lacks the go env line: %s", advice)
		}
		if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0"); err != nil {
			t.Fatalf("go mod download with the .netrc modgate login wrote: %v\n%s", err, stderr)
		}
	})
}

// Sites that mandate mTLS: the go command cannot present a client certificate, so
// `modgate agent` forwards for it.
func TestClientCertificateThroughAgent(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.TLS.ClientCAFile = p.CAFile
	cfg.TLS.ClientAuth = auth.ClientAuthRequire
	url := startApp(t, cfg)

	// Without the agent the go command has no certificate and is refused.
	g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
	if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0"); err == nil || !strings.Contains(stderr, "client certificate required") {
		t.Fatalf("no certificate: err=%v\n%s", err, stderr)
	}

	for _, tt := range []struct {
		name    string
		opts    []certgen.Option
		wantErr string
	}{
		{name: "ok/valid", opts: []certgen.Option{certgen.WithOU("payments")}},
		{name: "fail/expired", opts: []certgen.Option{certgen.Expired()}, wantErr: "client certificate expired"},
		{name: "fail/no-client-auth-eku", opts: []certgen.Option{certgen.WithoutClientAuth()}, wantErr: "client certificate lacks clientAuth extended key usage"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			certFile, keyFile := p.clientFiles(t, "ci-"+strings.ReplaceAll(tt.name, "/", "-"), tt.opts...)
			ag, err := agent.New(agent.Config{Upstream: url, Listen: "127.0.0.1:0", CertFile: certFile, KeyFile: keyFile, CAFile: p.CAFile}, nil)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { ag.Serve(ctx, ln); close(done) }()
			defer func() { cancel(); <-done }()

			g := gotest.New(t, "GOPROXY=http://"+ln.Addr().String(), "GONOSUMDB=mod.test")
			_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("through the agent: %v\n%s", err, stderr)
				}
				return
			}
			if err == nil || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("err=%v; want %q in:\n%s", err, tt.wantErr, stderr)
			}
		})
	}
}
