package auth

import (
	"crypto/tls"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/certgen"
)

func TestTLSConfigValidate(t *testing.T) {
	t.Parallel()
	base := func() TLSConfig {
		return TLSConfig{CertFile: "s.pem", KeyFile: "s.key", ClientCAFile: "ca.pem", ClientAuth: ClientAuthRequire}
	}
	tests := []struct {
		name    string
		edit    func(*TLSConfig)
		wantErr string // "" means valid
	}{
		{name: "ok/require", edit: func(*TLSConfig) {}},
		{name: "ok/off-without-ca", edit: func(c *TLSConfig) { c.ClientAuth = ClientAuthOff; c.ClientCAFile = "" }},
		{name: "ok/empty-mode-without-ca", edit: func(c *TLSConfig) { c.ClientAuth = ""; c.ClientCAFile = "" }},
		{name: "ok/empty-mode-with-ca", edit: func(c *TLSConfig) { c.ClientAuth = "" }},
		{name: "ok/san-uri-pattern", edit: func(c *TLSConfig) {
			c.Identity = CertIdentityConfig{From: SubjectFromSANURI, TeamsFrom: TeamsFromSANURIPattern, TeamPattern: "spiffe://corp/team/{team}/*"}
		}},
		{name: "fail/no-cert", edit: func(c *TLSConfig) { c.CertFile = "" }, wantErr: "cert_file and key_file are required"},
		{name: "fail/no-key", edit: func(c *TLSConfig) { c.KeyFile = "" }, wantErr: "cert_file and key_file are required"},
		{name: "fail/unknown-mode", edit: func(c *TLSConfig) { c.ClientAuth = "maybe" }, wantErr: `client_auth "maybe"`},
		{name: "fail/require-without-ca", edit: func(c *TLSConfig) { c.ClientCAFile = "" }, wantErr: "needs client_ca_file"},
		{name: "fail/off-with-ca", edit: func(c *TLSConfig) { c.ClientAuth = ClientAuthOff }, wantErr: "client_ca_file is set but client_auth is off"},
		{name: "fail/off-with-crl", edit: func(c *TLSConfig) { c.ClientAuth = ClientAuthOff; c.ClientCAFile = ""; c.CRLFile = "x.crl" }, wantErr: "crl_file is set"},
		{name: "fail/negative-interval", edit: func(c *TLSConfig) { c.ReloadInterval = -time.Second }, wantErr: "reload_interval"},
		{name: "fail/unknown-subject-source", edit: func(c *TLSConfig) { c.Identity.From = "dn" }, wantErr: `identity.from "dn"`},
		{name: "fail/unknown-teams-source", edit: func(c *TLSConfig) { c.Identity.TeamsFrom = "o" }, wantErr: `identity.teams_from "o"`},
		{name: "fail/pattern-without-placeholder", edit: func(c *TLSConfig) {
			c.Identity = CertIdentityConfig{TeamsFrom: TeamsFromSANURIPattern, TeamPattern: "spiffe://corp/team/*"}
		}, wantErr: "must contain {team} exactly once"},
		{name: "fail/pattern-without-pattern-mode", edit: func(c *TLSConfig) { c.Identity.TeamPattern = "spiffe://corp/{team}" },
			wantErr: "team_pattern is set"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := base()
			tt.edit(&cfg)
			err := cfg.Validate()
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Validate: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestTeamPattern(t *testing.T) {
	t.Parallel()
	tests := []struct {
		pattern, uri string
		want         string // "" means no match
	}{
		{"spiffe://corp/team/{team}/*", "spiffe://corp/team/payments/ci", "payments"},
		{"spiffe://corp/team/{team}/*", "spiffe://corp/team/payments/ci/extra", "payments"},
		{"spiffe://corp/team/{team}/*", "spiffe://corp/team/payments", ""},
		{"spiffe://corp/team/{team}/*", "spiffe://evil/team/payments/ci", ""},
		{"spiffe://corp/team/{team}/*", "spiffe://corpXteam/payments/ci", ""},
		{"spiffe://corp/team/{team}", "spiffe://corp/team/payments", "payments"},
		{"spiffe://corp/team/{team}", "spiffe://corp/team/a/b", ""},
		{"https://id.corp/{team}.svc", "https://id.corp/platform.svc", "platform"},
	}
	for _, tt := range tests {
		t.Run(tt.pattern+" "+tt.uri, func(t *testing.T) {
			t.Parallel()
			re, err := compileTeamPattern(tt.pattern)
			if err != nil {
				t.Fatal(err)
			}
			got := ""
			if m := re.FindStringSubmatch(tt.uri); m != nil {
				got = m[1]
			}
			if got != tt.want {
				t.Errorf("got team %q, want %q", got, tt.want)
			}
		})
	}
}

// TestProtocolFloor checks that old protocol versions and non-AEAD suites are
// refused during the handshake.
func TestProtocolFloor(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	st, err := NewServerTLS(pki.tlsConfig(ClientAuthOff), testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	addr := strings.TrimSuffix(strings.TrimPrefix(startServer(t, st), "https://"), "/")
	tests := []struct {
		name   string
		cfg    *tls.Config
		wantOK bool
	}{
		{name: "ok/tls13", cfg: &tls.Config{MinVersion: tls.VersionTLS13}, wantOK: true},
		{name: "ok/tls12-gcm", cfg: &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}}, wantOK: true},
		{name: "ok/tls12-chacha", cfg: &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}}, wantOK: true},
		{name: "fail/tls11", cfg: &tls.Config{MinVersion: tls.VersionTLS10, MaxVersion: tls.VersionTLS11}},
		{name: "fail/tls12-cbc", cfg: &tls.Config{MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := tt.cfg.Clone()
			cfg.RootCAs = pki.roots()
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", addr, cfg)
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tt.wantOK {
				t.Fatalf("handshake error %v, want success %v", err, tt.wantOK)
			}
		})
	}
}

// TestServerCertificateRotation rotates the server certificate on disk and
// checks that new connections see it without a restart, that a broken file
// keeps the last good certificate, and that the client CA bundle and CRL
// reload as well.
func TestServerCertificateRotation(t *testing.T) {
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
	if got := get(t, url, pki.roots(), client); got.Serial != pki.server.Cert.SerialNumber.String() || got.Status != http.StatusOK {
		t.Fatalf("before rotation: serial %s status %d, want %s 200", got.Serial, got.Status, pki.server.Cert.SerialNumber)
	}

	// New pair, written key first as certgen does: for a moment the files
	// do not match, which must not break anything.
	next, err := pki.ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, pki.keyFile, next.KeyPEM)
	writeFile(t, pki.certFile, next.CertPEM)
	want := next.Cert.SerialNumber.String()
	waitFor(t, "the rotated server certificate", func() bool { return get(t, url, pki.roots(), client).Serial == want })

	// A broken certificate file: the last good pair stays in service.
	writeFile(t, pki.certFile, []byte("-----BEGIN CERTIFICATE-----\nbroken\n-----END CERTIFICATE-----\n"))
	if err := st.Reload(); err == nil {
		t.Fatal("Reload of a broken certificate file succeeded")
	}
	time.Sleep(30 * time.Millisecond) // past the reload interval: lazy checks run too
	if got := get(t, url, pki.roots(), client); got.Serial != want || got.Status != http.StatusOK {
		t.Fatalf("after a broken file: serial %s status %d, want %s 200", got.Serial, got.Status, want)
	}

	// Client CA rotation: a certificate from a new CA is refused until the
	// bundle lists that CA, then accepted without a restart.
	newCA, err := certgen.NewCA("new client CA")
	if err != nil {
		t.Fatal(err)
	}
	newClient, err := newCA.IssueClient("ci-new", certgen.WithOU("platform"))
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, url, pki.roots(), newClient); got.Reason != ReasonUnknownCA {
		t.Fatalf("before CA rotation: %d %q, want %q", got.Status, got.Reason, ReasonUnknownCA)
	}
	writeFile(t, pki.caFile, append(append([]byte{}, pki.ca.CertPEM...), newCA.CertPEM...))
	waitFor(t, "the new client CA", func() bool {
		got := get(t, url, pki.roots(), newClient)
		return got.Status == http.StatusOK && got.Identity != nil && got.Identity.Subject == "ci-new"
	})
}

// TestCRLReload revokes a certificate by writing a CRL while the server runs.
func TestCRLReload(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	crlFile := filepath.Join(pki.dir, "ca.crl")
	empty, err := pki.ca.CRL(1, time.Now().Add(time.Hour)) // DER this time
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, crlFile, empty)
	cfg := pki.tlsConfig(ClientAuthRequire)
	cfg.CRLFile = crlFile
	st, err := NewServerTLS(cfg, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	url := startServer(t, st)
	client, err := pki.ca.IssueClient("laptop", certgen.WithOU("payments"))
	if err != nil {
		t.Fatal(err)
	}
	if got := get(t, url, pki.roots(), client); got.Status != http.StatusOK {
		t.Fatalf("before revocation: %d %q", got.Status, got.Reason)
	}
	revoking, err := pki.ca.CRL(2, time.Now().Add(time.Hour), client.Cert.SerialNumber)
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, crlFile, revoking)
	waitFor(t, "the revocation", func() bool { return get(t, url, pki.roots(), client).Reason == ReasonRevoked })

	// A CRL signed by a stranger is refused; the last good CRL stays.
	stranger, err := certgen.NewCA("test CA") // same name, different key
	if err != nil {
		t.Fatal(err)
	}
	forged, err := stranger.CRL(3, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, crlFile, forged)
	if err := st.Reload(); err == nil || !strings.Contains(err.Error(), "not signed by any client CA") {
		t.Fatalf("Reload with a forged CRL: %v, want a signature error", err)
	}
	if got := get(t, url, pki.roots(), client); got.Reason != ReasonRevoked {
		t.Fatalf("after a forged CRL: %d %q, want %q", got.Status, got.Reason, ReasonRevoked)
	}
}

func TestNewServerTLSErrors(t *testing.T) {
	t.Parallel()
	pki := newTestPKI(t)
	stranger, err := certgen.NewCA("stranger")
	if err != nil {
		t.Fatal(err)
	}
	forged, err := stranger.CRLPEM(1, time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	forgedFile := filepath.Join(pki.dir, "forged.crl")
	writeFile(t, forgedFile, forged)
	garbage := filepath.Join(pki.dir, "garbage.pem")
	writeFile(t, garbage, []byte("not a certificate"))

	tests := []struct {
		name    string
		edit    func(*TLSConfig)
		wantErr string
	}{
		{name: "missing-cert", edit: func(c *TLSConfig) { c.CertFile = filepath.Join(pki.dir, "nope.pem") }, wantErr: "no such file"},
		{name: "key-mismatch", edit: func(c *TLSConfig) { c.KeyFile = garbage }, wantErr: "load server certificate"},
		{name: "empty-ca-bundle", edit: func(c *TLSConfig) { c.ClientCAFile = garbage }, wantErr: "no CERTIFICATE blocks"},
		{name: "forged-crl", edit: func(c *TLSConfig) { c.CRLFile = forgedFile }, wantErr: "not signed by any client CA"},
		{name: "crl-not-a-crl", edit: func(c *TLSConfig) { c.CRLFile = pki.caFile }, wantErr: "no X509 CRL PEM blocks"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := pki.tlsConfig(ClientAuthRequire)
			tt.edit(&cfg)
			if _, err := NewServerTLS(cfg, testLogger(t)); err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("NewServerTLS: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}
