package agent

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// seen is what the fake modgate recorded about one request.
type seen struct {
	Identity      *identity.Identity
	Authorization string
	Host          string
}

// upstream is a fake modgate: TLS from auth.ServerTLS requiring a client
// certificate, serving a tiny GOPROXY for example.com/m.
type upstream struct {
	url     string
	ca      *certgen.CA
	zip     []byte
	mu      sync.Mutex
	records []seen
}

func (u *upstream) last() seen {
	u.mu.Lock()
	defer u.mu.Unlock()
	if len(u.records) == 0 {
		return seen{}
	}
	return u.records[len(u.records)-1]
}

func startUpstream(t *testing.T, ca *certgen.CA) *upstream {
	t.Helper()
	dir := t.TempDir()
	server, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	write(t, filepath.Join(dir, "ca.pem"), ca.CertPEM)
	write(t, filepath.Join(dir, "server.key"), server.KeyPEM)
	write(t, filepath.Join(dir, "server.pem"), server.CertPEM)
	st, err := auth.NewServerTLS(auth.TLSConfig{
		CertFile:     filepath.Join(dir, "server.pem"),
		KeyFile:      filepath.Join(dir, "server.key"),
		ClientCAFile: filepath.Join(dir, "ca.pem"),
		ClientAuth:   auth.ClientAuthRequire,
	}, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	u := &upstream{ca: ca, zip: make([]byte, 8<<20)}
	rand.Read(u.zip)

	mux := http.NewServeMux()
	mux.HandleFunc("GET /example.com/m/@v/list", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "v1.0.0\nv1.1.0\n")
	})
	mux.HandleFunc("GET /example.com/m/@v/v1.0.0.info", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"Version":"v1.0.0","Time":"2026-01-02T03:04:05Z"}`)
	})
	mux.HandleFunc("GET /example.com/m/@v/v1.0.0.mod", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, moduleGoMod)
	})
	mux.HandleFunc("GET /example.com/m/@v/v1.0.0.zip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		w.Write(moduleZip(t))
	})
	mux.HandleFunc("GET /example.com/big/@v/v1.0.0.zip", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/zip")
		w.Write(u.zip)
	})
	mux.HandleFunc("POST /publish", func(w http.ResponseWriter, r *http.Request) {
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		json.NewEncoder(w).Encode(map[string]any{"bytes": n, "sha256": hex.EncodeToString(h.Sum(nil))})
	})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: st.Config(),
		// What modgate's middleware does: identity from the certificate
		// first, 401 with the reason when it is refused.
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := st.IdentityFromTLS(r.TLS)
			if err != nil {
				http.Error(w, derrors.PublicMessage(err), derrors.Status(err))
				return
			}
			u.mu.Lock()
			u.records = append(u.records, seen{Identity: id, Authorization: r.Header.Get("Authorization"), Host: r.Host})
			u.mu.Unlock()
			mux.ServeHTTP(w, r)
		}),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	u.url = "https://" + ln.Addr().String()
	return u
}

// clientFiles issues a client certificate and writes it and the CA to dir.
func clientFiles(t *testing.T, ca *certgen.CA, dir, cn string, opts ...certgen.Option) (cfg Config, leaf *certgen.Leaf) {
	t.Helper()
	leaf, err := ca.IssueClient(cn, opts...)
	if err != nil {
		t.Fatal(err)
	}
	cfg = Config{
		CertFile:       filepath.Join(dir, "client.pem"),
		KeyFile:        filepath.Join(dir, "client.key"),
		CAFile:         filepath.Join(dir, "ca.pem"),
		ReloadInterval: 10 * time.Millisecond,
	}
	write(t, cfg.CAFile, ca.CertPEM)
	write(t, cfg.KeyFile, leaf.KeyPEM)
	write(t, cfg.CertFile, leaf.CertPEM)
	return cfg, leaf
}

// startAgent runs an agent on a loopback port until the test ends.
func startAgent(t *testing.T, cfg Config) (*Agent, string) {
	t.Helper()
	a, err := New(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return a, GOPROXY(ln)
}

func TestAgentForwards(t *testing.T) {
	t.Parallel()
	ca, err := certgen.NewCA("corp CA")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, ca)
	cfg, leaf := clientFiles(t, ca, t.TempDir(), "ci-payments", certgen.WithOU("payments"))
	cfg.Upstream = up.url
	_, proxy := startAgent(t, cfg)

	t.Run("list", func(t *testing.T) {
		req, _ := http.NewRequest("GET", proxy+"/example.com/m/@v/list", nil)
		req.Header.Set("Authorization", "Bearer mgt_secret")
		status, body := do(t, req)
		if status != http.StatusOK || body != "v1.0.0\nv1.1.0\n" {
			t.Fatalf("got %d %q", status, body)
		}
		got := up.last()
		if got.Identity == nil || got.Identity.Subject != "ci-payments" || !slices.Equal(got.Identity.Teams, []string{"payments"}) ||
			got.Identity.Method != identity.MethodMTLS || got.Identity.CertFingerprint != leaf.Fingerprint() {
			t.Errorf("upstream saw identity %+v, want ci-payments/payments with fingerprint %s", got.Identity, leaf.Fingerprint())
		}
		if got.Authorization != "Bearer mgt_secret" {
			t.Errorf("upstream saw Authorization %q", got.Authorization)
		}
		if got.Host != strings.TrimPrefix(up.url, "https://") {
			t.Errorf("upstream saw Host %q, want its own", got.Host)
		}
	})
	t.Run("zip-streams-down", func(t *testing.T) {
		req, _ := http.NewRequest("GET", proxy+"/example.com/big/@v/v1.0.0.zip", nil)
		status, body := do(t, req)
		if status != http.StatusOK || body != string(up.zip) {
			t.Fatalf("got %d and %d bytes, want 200 and the %d-byte zip", status, len(body), len(up.zip))
		}
	})
	t.Run("body-streams-up", func(t *testing.T) {
		payload := make([]byte, 4<<20)
		rand.Read(payload)
		sum := sha256.Sum256(payload)
		req, _ := http.NewRequest("POST", proxy+"/publish", bytes.NewReader(payload))
		status, body := do(t, req)
		var got struct {
			Bytes  int64
			SHA256 string
		}
		if status != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil ||
			got.Bytes != int64(len(payload)) || got.SHA256 != hex.EncodeToString(sum[:]) {
			t.Fatalf("got %d %q, want the payload's size and hash", status, body)
		}
	})
	t.Run("foreign-host-refused", func(t *testing.T) {
		req, _ := http.NewRequest("GET", proxy+"/example.com/m/@v/list", nil)
		req.Host = "rebound.attacker.example"
		if status, body := do(t, req); status != http.StatusForbidden || !strings.Contains(body, "refusing request for host") {
			t.Fatalf("got %d %q, want 403", status, body)
		}
	})
}

// TestAgentRelaysRefusal checks that modgate's 401 reason for a bad
// certificate reaches the client unchanged, as the go command will print it.
func TestAgentRelaysRefusal(t *testing.T) {
	t.Parallel()
	ca, err := certgen.NewCA("corp CA")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, ca)
	cfg, _ := clientFiles(t, ca, t.TempDir(), "old-laptop", certgen.Expired())
	cfg.Upstream = up.url
	_, proxy := startAgent(t, cfg)
	req, _ := http.NewRequest("GET", proxy+"/example.com/m/@v/list", nil)
	if status, body := do(t, req); status != http.StatusUnauthorized || body != auth.ReasonExpired+"\n" {
		t.Fatalf("got %d %q, want 401 %q", status, body, auth.ReasonExpired)
	}
}

func TestAgentUpstreamUnreachable(t *testing.T) {
	t.Parallel()
	ca, err := certgen.NewCA("corp CA")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens here now
	cfg, _ := clientFiles(t, ca, t.TempDir(), "ci")
	cfg.Upstream = "https://" + addr
	_, proxy := startAgent(t, cfg)
	req, _ := http.NewRequest("GET", proxy+"/example.com/m/@v/list", nil)
	status, body := do(t, req)
	if status != http.StatusBadGateway || !strings.HasPrefix(body, "modgate agent: https://"+addr+": ") || strings.Count(body, "\n") != 1 {
		t.Fatalf("got %d %q, want 502 with one line naming the upstream", status, body)
	}
}

// TestAgentCertificateRotation replaces the client certificate on disk and
// checks that modgate sees the new one without restarting the agent.
func TestAgentCertificateRotation(t *testing.T) {
	t.Parallel()
	ca, err := certgen.NewCA("corp CA")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, ca)
	dir := t.TempDir()
	cfg, first := clientFiles(t, ca, dir, "ci", certgen.WithOU("payments"))
	cfg.Upstream = up.url
	a, proxy := startAgent(t, cfg)
	list := func() string {
		req, _ := http.NewRequest("GET", proxy+"/example.com/m/@v/list", nil)
		if status, body := do(t, req); status != http.StatusOK {
			t.Fatalf("got %d %q", status, body)
		}
		return up.last().Identity.CertFingerprint
	}
	if got := list(); got != first.Fingerprint() {
		t.Fatalf("first certificate: upstream saw %s, want %s", got, first.Fingerprint())
	}
	_, second := clientFiles(t, ca, dir, "ci", certgen.WithOU("platform"))
	deadline := time.Now().Add(5 * time.Second)
	for list() != second.Fingerprint() {
		if time.Now().After(deadline) {
			t.Fatalf("upstream never saw the rotated certificate; agent presents serial %s", a.ClientCertificate().Leaf.SerialNumber)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if teams := up.last().Identity.Teams; !slices.Equal(teams, []string{"platform"}) {
		t.Errorf("rotated certificate's teams %v, want [platform]", teams)
	}
}

// TestGoCommandThroughAgent is the reason the agent exists: the real go
// command, which cannot present a client certificate, downloads a module from
// a modgate that requires one — and, with a bad certificate, prints modgate's
// reason.
func TestGoCommandThroughAgent(t *testing.T) {
	t.Parallel()
	ca, err := certgen.NewCA("corp CA")
	if err != nil {
		t.Fatal(err)
	}
	up := startUpstream(t, ca)

	tests := []struct {
		name       string
		opts       []certgen.Option
		wantStderr string // "" means success
	}{
		{name: "ok/download", opts: []certgen.Option{certgen.WithOU("payments")}},
		{name: "fail/expired-certificate", opts: []certgen.Option{certgen.Expired()},
			wantStderr: "server response: " + auth.ReasonExpired},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg, leaf := clientFiles(t, ca, t.TempDir(), "ci", tt.opts...)
			cfg.Upstream = up.url
			_, proxy := startAgent(t, cfg)

			home := t.TempDir()
			cmd := exec.Command("go", "mod", "download", "-json", "example.com/m@v1.0.0")
			cmd.Dir = home
			cmd.Env = append(os.Environ(),
				"GOPROXY="+proxy, "GOSUMDB=off", "GOTOOLCHAIN=local", "GOFLAGS=-modcacherw",
				"GOPATH="+filepath.Join(home, "gopath"), "GOMODCACHE="+filepath.Join(home, "modcache"),
				"GOCACHE="+filepath.Join(home, "gocache"), "HOME="+home, "GONOPROXY=", "GOPRIVATE=", "GONOSUMDB=")
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()

			t.Logf("go output:\n%s%s", stdout.String(), stderr.String())
			if tt.wantStderr != "" {
				if err == nil || !strings.Contains(stdout.String()+stderr.String(), tt.wantStderr) {
					t.Fatalf("go mod download: %v, want output containing %q\nstdout:\n%s\nstderr:\n%s", err, tt.wantStderr, stdout.String(), stderr.String())
				}
				return
			}
			if err != nil {
				t.Fatalf("go mod download: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
			}
			var got struct{ Version, Zip, Error string }
			if err := json.Unmarshal(stdout.Bytes(), &got); err != nil || got.Version != "v1.0.0" || got.Error != "" || got.Zip == "" {
				t.Fatalf("go mod download -json: %+v (%v)\n%s", got, err, stdout.String())
			}
			if _, err := os.Stat(got.Zip); err != nil {
				t.Errorf("downloaded zip: %v", err)
			}
			if id := up.last().Identity; id == nil || id.CertFingerprint != leaf.Fingerprint() {
				t.Errorf("upstream saw identity %+v, want the agent's certificate %s", id, leaf.Fingerprint())
			}
		})
	}
}

const moduleGoMod = "module example.com/m\n\ngo 1.21\n"

// moduleZip builds example.com/m@v1.0.0's zip in the layout the go command
// checks: every file under "<module>@<version>/".
func moduleZip(t *testing.T) []byte {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, content := range map[string]string{
		"go.mod": moduleGoMod,
		"m.go":   "package m\n\n// Answer is the answer.\nconst Answer = 42\n",
	} {
		f, err := zw.Create("example.com/m@v1.0.0/" + name)
		if err != nil {
			t.Error(err)
			return nil
		}
		io.WriteString(f, content)
	}
	if err := zw.Close(); err != nil {
		t.Error(err)
	}
	return buf.Bytes()
}

func TestConfigValidate(t *testing.T) {
	t.Parallel()
	base := func() Config {
		return Config{Upstream: "https://modgate.corp:8443", CertFile: "c.pem", KeyFile: "c.key"}
	}
	tests := []struct {
		name    string
		edit    func(*Config)
		wantErr string
	}{
		{name: "ok/default-listen", edit: func(*Config) {}},
		{name: "ok/ipv4-loopback", edit: func(c *Config) { c.Listen = "127.0.0.1:7070" }},
		{name: "ok/other-127", edit: func(c *Config) { c.Listen = "127.0.0.2:7070" }},
		{name: "ok/ipv6-loopback", edit: func(c *Config) { c.Listen = "[::1]:7070" }},
		{name: "ok/localhost", edit: func(c *Config) { c.Listen = "localhost:7070" }},
		{name: "ok/upstream-path", edit: func(c *Config) { c.Upstream = "https://corp.example/modgate/" }},
		{name: "fail/all-interfaces", edit: func(c *Config) { c.Listen = ":7070" }, wantErr: "not loopback"},
		{name: "fail/unspecified", edit: func(c *Config) { c.Listen = "0.0.0.0:7070" }, wantErr: "not loopback"},
		{name: "fail/lan-address", edit: func(c *Config) { c.Listen = "192.168.1.5:7070" }, wantErr: "not loopback"},
		{name: "fail/hostname", edit: func(c *Config) { c.Listen = "devbox:7070" }, wantErr: "not loopback"},
		{name: "fail/no-port", edit: func(c *Config) { c.Listen = "127.0.0.1" }, wantErr: "missing port"},
		{name: "fail/http-upstream", edit: func(c *Config) { c.Upstream = "http://modgate.corp" }, wantErr: "must be an https:// URL"},
		{name: "fail/no-upstream", edit: func(c *Config) { c.Upstream = "" }, wantErr: "upstream URL is required"},
		{name: "fail/upstream-credentials", edit: func(c *Config) { c.Upstream = "https://u:p@modgate.corp" }, wantErr: "credentials"},
		{name: "fail/no-key", edit: func(c *Config) { c.KeyFile = "" }, wantErr: "certificate and key files are required"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := base()
			tt.edit(&cfg)
			err := cfg.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func do(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	client := &http.Client{Timeout: 30 * time.Second}
	resp, err := client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil && !errors.Is(err, io.EOF) {
		t.Fatal(err)
	}
	return resp.StatusCode, string(body)
}

func write(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := certgen.WriteFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), nil))
}
