package e2e

import (
	"bytes"
	"crypto/tls"
	"github.com/modgate/modgate/internal/app"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

const upstreamPassword = "s3cret-upstream-pass"

// privateMirror is an internal mirror (think Artifactory) behind a private CA
// that requires a client certificate and Basic credentials, in front of a
// proxytest upstream. Files holds the CA, client certificate, key and password
// file modgate is configured with.
type privateMirror struct {
	URL      string
	Upstream *proxytest.Server
	Files    map[string]string
}

func startPrivateMirror(t *testing.T) *privateMirror {
	t.Helper()
	ca, err := certgen.NewCA("corp upstream CA")
	if err != nil {
		t.Fatal(err)
	}
	srvLeaf, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.IssueClient("modgate-eu-1")
	if err != nil {
		t.Fatal(err)
	}
	up := proxytest.NewServer(t, proxytest.StandardModules()...)
	target, _ := url.Parse(up.URL)
	rp := httputil.NewSingleHostReverseProxy(target)
	ts := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "modgate" || p != upstreamPassword {
			w.Header().Set("WWW-Authenticate", `Basic realm="artifactory"`)
			http.Error(w, "bad credentials", http.StatusUnauthorized)
			return
		}
		rp.ServeHTTP(w, r)
	}))
	ts.TLS = &tls.Config{
		Certificates: []tls.Certificate{srvLeaf.TLSCertificate()},
		ClientCAs:    ca.Pool(),
		ClientAuth:   tls.RequireAndVerifyClientCert,
		MinVersion:   tls.VersionTLS12,
	}
	ts.StartTLS()
	t.Cleanup(ts.Close)

	dir := t.TempDir()
	files := map[string]string{}
	for name, data := range map[string][]byte{
		"ca": ca.CertPEM, "cert": client.CertPEM, "key": client.KeyPEM,
		"password": []byte(upstreamPassword + "\n"), "wrong-password": []byte("guess\n"),
	} {
		files[name] = filepath.Join(dir, name)
		if err := os.WriteFile(files[name], data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return &privateMirror{URL: ts.URL, Upstream: up, Files: files}
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// An upstream behind a private CA that requires a client certificate and Basic
// credentials is reached with the configured CA, certificate and credentials, and
// refused without any one of them. The password never shows in modgate's answers,
// logs or metrics.
func TestUpstreamWithPrivateCAAndClientCertificate(t *testing.T) {
	pm := startPrivateMirror(t)
	full := config.UpstreamMirror{
		URL: pm.URL, CAFile: pm.Files["ca"],
		ClientCertFile: pm.Files["cert"], ClientKeyFile: pm.Files["key"],
		Username: "modgate", PasswordFile: pm.Files["password"],
		MaxConcurrency: 4,
	}
	tests := []struct {
		name    string
		mirror  func(m config.UpstreamMirror) config.UpstreamMirror
		wantErr string
	}{
		{name: "ok/ca-certificate-and-credentials", mirror: func(m config.UpstreamMirror) config.UpstreamMirror { return m }},
		{name: "fail/system-roots-only", wantErr: "upstream mirror unreachable", mirror: func(m config.UpstreamMirror) config.UpstreamMirror {
			m.CAFile = ""
			return m
		}},
		{name: "fail/no-client-certificate", wantErr: "upstream mirror unreachable", mirror: func(m config.UpstreamMirror) config.UpstreamMirror {
			m.ClientCertFile, m.ClientKeyFile = "", ""
			return m
		}},
		{name: "fail/wrong-password", wantErr: "upstream mirror answered 401 Unauthorized", mirror: func(m config.UpstreamMirror) config.UpstreamMirror {
			m.PasswordFile = pm.Files["wrong-password"]
			return m
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := config.Defaults()
			cfg.Cache.Dir = t.TempDir()
			cfg.Auth.Anonymous = true
			cfg.Upstream.Retries = 0
			cfg.SumDB.Names = nil
			cfg.SumDB.Verify = false // the fixtures are in no checksum database modgate can verify against
			cfg.Upstream.Mirrors = []config.UpstreamMirror{tt.mirror(full)}
			if err := cfg.Validate(); err != nil {
				t.Fatal(err)
			}
			logs := &lockedBuffer{}
			s, err := app.NewServer(app.ServerOptions{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))})
			if err != nil {
				t.Fatal(err)
			}
			mg := httptest.NewServer(s.Handler())
			t.Cleanup(mg.Close)

			g := gotest.New(t, "GOPROXY="+mg.URL, "GONOSUMDB=mod.test")
			_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0")
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("go mod download through the private mirror: %v\n%s", err, stderr)
				}
			} else if err == nil || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("err=%v stderr=%s; want a failure printing %q", err, stderr, tt.wantErr)
			}

			resp, err := http.Get(mg.URL + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			metrics, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			for what, text := range map[string]string{"go command output": stderr, "logs": logs.String(), "metrics": string(metrics)} {
				if strings.Contains(text, upstreamPassword) {
					t.Errorf("the upstream password appears in modgate's %s", what)
				}
			}
			if !strings.Contains(string(metrics), `upstream="`+pm.URL+`"`) {
				t.Errorf("metrics do not name the mirror %s", pm.URL)
			}
		})
	}
}
