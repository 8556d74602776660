package auth

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// testPKI is a CA with a server certificate for 127.0.0.1, written to files.
type testPKI struct {
	dir      string
	ca       *certgen.CA
	server   *certgen.Leaf
	caFile   string
	certFile string
	keyFile  string
}

func newTestPKI(t *testing.T) *testPKI {
	t.Helper()
	ca, err := certgen.NewCA("test CA")
	if err != nil {
		t.Fatal(err)
	}
	server, err := ca.IssueServer([]string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	p := &testPKI{
		dir: dir, ca: ca, server: server,
		caFile:   filepath.Join(dir, "ca.pem"),
		certFile: filepath.Join(dir, "server.pem"),
		keyFile:  filepath.Join(dir, "server.key"),
	}
	writeFile(t, p.caFile, ca.CertPEM)
	writeFile(t, p.keyFile, server.KeyPEM)
	writeFile(t, p.certFile, server.CertPEM)
	return p
}

func (p *testPKI) roots() *x509.CertPool { return p.ca.Pool() }

// tlsConfig is a TLSConfig over the PKI's files with a fast reload interval.
func (p *testPKI) tlsConfig(mode ClientAuthMode) TLSConfig {
	cfg := TLSConfig{CertFile: p.certFile, KeyFile: p.keyFile, ClientAuth: mode, ReloadInterval: 10 * time.Millisecond}
	if mode != ClientAuthOff {
		cfg.ClientCAFile = p.caFile
	}
	return cfg
}

func writeFile(t *testing.T, path string, data []byte) {
	t.Helper()
	if err := certgen.WriteFileAtomic(path, data, 0o600); err != nil {
		t.Fatal(err)
	}
}

func testLogger(t *testing.T) *slog.Logger {
	return slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelDebug}))
}

// identityResponse is what the test server reports about a request.
type identityResponse struct {
	Identity *identity.Identity
	Serial   string // the server certificate serial the client saw
	Proto    string
	Status   int
	Reason   string
}

// startServer serves HTTPS on loopback with st's config. The handler answers
// 401 with the public reason when IdentityFromTLS refuses, and otherwise the
// identity as JSON ("null" when there is none) — what the real server does.
func startServer(t *testing.T, st *ServerTLS) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{
		TLSConfig: st.Config(),
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id, err := st.IdentityFromTLS(r.TLS)
			if err != nil {
				http.Error(w, derrors.PublicMessage(err), derrors.Status(err))
				return
			}
			json.NewEncoder(w).Encode(id)
		}),
		ErrorLog: slog.NewLogLogger(testLogger(t).Handler(), slog.LevelWarn),
	}
	go srv.ServeTLS(ln, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + ln.Addr().String() + "/"
}

// get makes one request on a fresh connection presenting client (may be nil).
func get(t *testing.T, url string, roots *x509.CertPool, client *certgen.Leaf) identityResponse {
	t.Helper()
	got, err := fetch(url, roots, client)
	if err != nil {
		t.Fatal(err)
	}
	return got
}

// fetch is get for goroutines other than the test's, which must not t.Fatal.
func fetch(url string, roots *x509.CertPool, client *certgen.Leaf) (identityResponse, error) {
	cfg := &tls.Config{RootCAs: roots}
	if client != nil {
		cfg.Certificates = []tls.Certificate{client.TLSCertificate()}
	}
	tr := &http.Transport{TLSClientConfig: cfg, ForceAttemptHTTP2: true, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get(url)
	if err != nil {
		return identityResponse{}, fmt.Errorf("GET %s: %w", url, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return identityResponse{}, err
	}
	out := identityResponse{
		Status: resp.StatusCode,
		Proto:  resp.Proto,
		Serial: resp.TLS.PeerCertificates[0].SerialNumber.String(),
	}
	if resp.StatusCode == http.StatusOK {
		if err := json.Unmarshal(body, &out.Identity); err != nil {
			return out, fmt.Errorf("decode %q: %w", body, err)
		}
	} else {
		out.Reason = string(trimNewline(body))
	}
	return out, nil
}

func trimNewline(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r') {
		b = b[:len(b)-1]
	}
	return b
}

// waitFor polls cond until it holds or five seconds pass.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
