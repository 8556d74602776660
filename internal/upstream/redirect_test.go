package upstream

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/metrics"
)

// seen records what a test server was sent.
type seen struct {
	mu   sync.Mutex
	auth []string // Authorization header of each request ("" when absent)
	cert []string // CN of the client certificate presented ("" when none)
}

func (s *seen) record(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.auth = append(s.auth, r.Header.Get("Authorization"))
	cn := ""
	if r.TLS != nil && len(r.TLS.PeerCertificates) > 0 {
		cn = r.TLS.PeerCertificates[0].Subject.CommonName
	}
	s.cert = append(s.cert, cn)
}

func (s *seen) get() (auth, cert []string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.auth...), append([]string(nil), s.cert...)
}

// startServer starts a server that records each request and answers with
// handle; tlsOn serves https and asks for (without requiring) a client
// certificate.
func startServer(t *testing.T, tlsOn bool, handle http.HandlerFunc) (*httptest.Server, *seen) {
	t.Helper()
	s := &seen{}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.record(r)
		handle(w, r)
	}))
	if tlsOn {
		srv.TLS = &tls.Config{ClientAuth: tls.RequestClientCert}
		srv.StartTLS()
	} else {
		srv.Start()
	}
	t.Cleanup(srv.Close)
	return srv, s
}

func redirectTo(target string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target+r.URL.Path, http.StatusFound)
	}
}

func ok(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "v1.0.0\n") }

// writeMirrorFiles writes the test server's CA, a client key pair named cn and a
// password file, returning a MirrorConfig for url that uses all three.
func writeMirrorFiles(t *testing.T, url string, caSrv *httptest.Server, cn string) MirrorConfig {
	t.Helper()
	dir := t.TempDir()
	mc := MirrorConfig{URL: url, Username: "ci", PasswordFile: filepath.Join(dir, "pw")}
	os.WriteFile(mc.PasswordFile, []byte("hunter2\n"), 0o600)
	if caSrv != nil {
		mc.CAFile = filepath.Join(dir, "ca.pem")
		os.WriteFile(mc.CAFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caSrv.Certificate().Raw}), 0o600)
	}
	if cn != "" {
		mc.ClientCertFile, mc.ClientKeyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client.key")
		writeClientPair(t, mc.ClientCertFile, mc.ClientKeyFile, cn, time.Now())
	}
	return mc
}

func writeClientPair(t *testing.T, certFile, keyFile, cn string, mtime time.Time) {
	t.Helper()
	ca, err := certgen.NewCA("upstream test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueClient(cn)
	if err != nil {
		t.Fatal(err)
	}
	for f, b := range map[string][]byte{certFile: leaf.CertPEM, keyFile: leaf.KeyPEM} {
		if err := os.WriteFile(f, b, 0o600); err != nil {
			t.Fatal(err)
		}
		os.Chtimes(f, mtime, mtime)
	}
}

func fetchOnce(t *testing.T, mc MirrorConfig) error {
	t.Helper()
	cfg := Config{RetryBackoff: time.Millisecond}
	e, err := NewMirror(mc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := NewChain([]Entry{e}, cfg, nil, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	resp, err := c.Fetch(context.Background(), "m.test/x/@v/list", 1<<10)
	if err == nil {
		resp.Body.Close()
	}
	return err
}

// A redirect keeps the mirror's credentials only while it stays on the mirror's
// origin (scheme, host and port); https→http is refused outright.
func TestRedirectCredentials(t *testing.T) {
	t.Parallel()
	const basic = "Basic Y2k6aHVudGVyMg==" // ci:hunter2

	t.Run("fail/https-to-http-same-host", func(t *testing.T) {
		t.Parallel()
		plain, plainSeen := startServer(t, false, ok)
		// Same host (127.0.0.1), plain http: the hop that would leak in clear.
		tlsSrv, _ := startServer(t, true, redirectTo(plain.URL))
		err := fetchOnce(t, writeMirrorFiles(t, tlsSrv.URL, tlsSrv, ""))
		if err == nil || !strings.Contains(err.Error(), "https to http") && !errors.Is(err, errInsecureRedirect) {
			t.Errorf("fetch = %v, want the https→http redirect refused", err)
		}
		if auth, _ := plainSeen.get(); len(auth) != 0 {
			t.Errorf("the http server was sent %d requests (%q)", len(auth), auth)
		}
	})

	t.Run("ok/same-origin-keeps-credentials", func(t *testing.T) {
		t.Parallel()
		srv, s := startServer(t, true, func(w http.ResponseWriter, r *http.Request) {
			if !strings.HasPrefix(r.URL.Path, "/moved") {
				http.Redirect(w, r, "/moved"+r.URL.Path, http.StatusFound)
				return
			}
			ok(w, r)
		})
		if err := fetchOnce(t, writeMirrorFiles(t, srv.URL, srv, "mirror-client")); err != nil {
			t.Fatal(err)
		}
		auth, cert := s.get()
		if len(auth) != 2 || auth[1] != basic || cert[1] != "mirror-client" {
			t.Errorf("after a same-origin redirect: auth %q, client certs %q", auth, cert)
		}
	})

	t.Run("ok/other-port-drops-credentials", func(t *testing.T) {
		t.Parallel()
		other, otherSeen := startServer(t, true, ok)
		first, _ := startServer(t, true, redirectTo(other.URL)) // same host, other port
		mc := writeMirrorFiles(t, first.URL, first, "mirror-client")
		if err := fetchOnce(t, mc); err != nil {
			t.Fatal(err)
		}
		auth, cert := otherSeen.get()
		if len(auth) != 1 || auth[0] != "" || cert[0] != "" {
			t.Errorf("another port was sent Authorization %q, client certificate %q", auth, cert)
		}
	})

	t.Run("ok/other-host-drops-credentials", func(t *testing.T) {
		t.Parallel()
		var srv *httptest.Server
		srv, s := startServer(t, false, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasPrefix(r.Host, "127.0.0.1") {
				// Same port and scheme, another host name.
				http.Redirect(w, r, "http://localhost:"+portOf(srv)+r.URL.Path, http.StatusFound)
				return
			}
			ok(w, r)
		})
		if err := fetchOnce(t, writeMirrorFiles(t, srv.URL, nil, "")); err != nil {
			t.Fatal(err)
		}
		auth, _ := s.get()
		if len(auth) != 2 || auth[0] != basic || auth[1] != "" {
			t.Errorf("Authorization per request = %q, want it on the first only", auth)
		}
	})

	t.Run("ok/http-to-https-other-scheme-drops-credentials", func(t *testing.T) {
		t.Parallel()
		tlsSrv, tlsSeen := startServer(t, true, ok)
		plain, _ := startServer(t, false, redirectTo(tlsSrv.URL))
		mc := writeMirrorFiles(t, plain.URL, tlsSrv, "")
		if err := fetchOnce(t, mc); err != nil {
			t.Fatal(err)
		}
		if auth, _ := tlsSeen.get(); len(auth) != 1 || auth[0] != "" {
			t.Errorf("the https origin was sent Authorization %q", auth)
		}
	})
}

// A mirror's client certificate is reloaded from its files when they change,
// without a restart; a broken rotation keeps the last good pair in service.
func TestClientCertificateReload(t *testing.T) {
	t.Parallel()
	srv, s := startServer(t, true, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Connection", "close") // a new handshake per request
		ok(w, r)
	})
	mc := writeMirrorFiles(t, srv.URL, srv, "first")
	cfg := Config{RetryBackoff: time.Millisecond}
	e, err := NewMirror(mc, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := NewChain([]Entry{e}, cfg, nil, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	fetch := func() string {
		t.Helper()
		resp, err := c.Fetch(context.Background(), "m.test/x/@v/list", 1<<10)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		_, cert := s.get()
		return cert[len(cert)-1]
	}
	if got := fetch(); got != "first" {
		t.Fatalf("presented %q, want first", got)
	}
	writeClientPair(t, mc.ClientCertFile, mc.ClientKeyFile, "second", time.Now().Add(time.Minute))
	e.clientCert.mu.Lock()
	e.clientCert.checked = time.Time{} // skip the once-a-second stat throttle
	e.clientCert.mu.Unlock()
	if got := fetch(); got != "second" {
		t.Errorf("after rotation presented %q, want second", got)
	}
	// A half-written rotation: the certificate is garbage. The last good pair stays.
	os.WriteFile(mc.ClientCertFile, []byte("not a certificate"), 0o600)
	os.Chtimes(mc.ClientCertFile, time.Now().Add(2*time.Minute), time.Now().Add(2*time.Minute))
	if err := e.clientCert.reload(); err == nil {
		t.Error("reload of a garbage certificate succeeded")
	}
	if got := fetch(); got != "second" {
		t.Errorf("after a broken rotation presented %q, want the last good pair", got)
	}
}

func portOf(srv *httptest.Server) string {
	u, _ := url.Parse(srv.URL)
	return u.Port()
}
