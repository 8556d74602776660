package auth

import (
	"crypto/tls"
	"crypto/x509"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/certgen"
)

// TestConcurrentReload verifies and handshakes from many goroutines while the
// files are rewritten, for the race detector: every request must see a
// consistent state (a verdict, never a panic or a torn identity).
func TestConcurrentReload(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	st, err := NewServerTLS(pki.tlsConfig(ClientAuthRequire), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	url := startServer(t, st)
	client, err := pki.ca.IssueClient("ci", certgen.WithOU("payments"))
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	var writer sync.WaitGroup
	writer.Go(func() {
		for {
			select {
			case <-stop:
				return
			default:
			}
			next, err := pki.ca.IssueServer([]string{"127.0.0.1"})
			if err != nil {
				t.Error(err)
				return
			}
			// t.Fatal must not run off the test goroutine: report and stop.
			for _, f := range []struct {
				path string
				data []byte
			}{{pki.keyFile, next.KeyPEM}, {pki.certFile, next.CertPEM}, {pki.caFile, pki.ca.CertPEM}} {
				if err := certgen.WriteFileAtomic(f.path, f.data, 0o600); err != nil {
					t.Error(err)
					return
				}
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	var clients sync.WaitGroup
	for range 4 {
		clients.Go(func() {
			for range 10 {
				got, err := fetch(url, pki.roots(), client)
				if err != nil || got.Status != 200 || got.Identity == nil || got.Identity.Subject != "ci" {
					t.Errorf("got %d %q %+v, %v", got.Status, got.Reason, got.Identity, err)
					return
				}
			}
		})
	}
	clients.Wait()
	close(stop)
	writer.Wait()
}

// BenchmarkIdentityFromTLS measures the per-request cost of the client
// certificate identity: cached (every request after the first on a chain) and
// uncached (the first, or after a CA/CRL reload).
func BenchmarkIdentityFromTLS(b *testing.B) {
	dir := b.TempDir()
	ca, _ := certgen.NewCA("bench CA")
	server, _ := ca.IssueServer([]string{"127.0.0.1"})
	client, _ := ca.IssueClient("ci", certgen.WithOU("payments"))
	for name, data := range map[string][]byte{"ca.pem": ca.CertPEM, "s.pem": server.CertPEM, "s.key": server.KeyPEM} {
		if err := certgen.WriteFileAtomic(dir+"/"+name, data, 0o600); err != nil {
			b.Fatal(err)
		}
	}
	st, err := NewServerTLS(TLSConfig{CertFile: dir + "/s.pem", KeyFile: dir + "/s.key", ClientCAFile: dir + "/ca.pem",
		ClientAuth: ClientAuthRequire, ReloadInterval: time.Hour}, nil)
	if err != nil {
		b.Fatal(err)
	}
	state := &tls.ConnectionState{PeerCertificates: []*x509.Certificate{client.Cert}}
	b.Run("cached", func(b *testing.B) {
		for b.Loop() {
			if _, err := st.IdentityFromTLS(state); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("uncached", func(b *testing.B) {
		ts := st.trust.Load()
		for b.Loop() {
			if _, err := st.verifyUncached(ts, state.PeerCertificates, time.Now()); err != nil {
				b.Fatal(err)
			}
		}
	})
}
