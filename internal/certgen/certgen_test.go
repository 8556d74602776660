package certgen

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestInitFiles(t *testing.T) {
	t.Parallel()
	dir := filepath.Join(t.TempDir(), "certs")
	written, err := Init(InitOptions{Dir: dir, Teams: []string{"payments", "platform"}, Subject: "ci"})
	if err != nil {
		t.Fatal(err)
	}
	wantFiles := map[string]os.FileMode{
		"ca.pem": 0o644, "ca.key": 0o600,
		"server.pem": 0o644, "server.key": 0o600,
		"client-payments.pem": 0o644, "client-payments.key": 0o600,
		"client-platform.pem": 0o644, "client-platform.key": 0o600,
	}
	if len(written) != len(wantFiles) {
		t.Errorf("Init reported %d files, want %d: %+v", len(written), len(wantFiles), written)
	}
	for _, w := range written {
		if !w.Created {
			t.Errorf("%s reported as kept on a fresh directory", w.Path)
		}
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != len(wantFiles) {
		var names []string
		for _, e := range entries {
			names = append(names, e.Name())
		}
		t.Errorf("directory holds %v, want exactly %d files (no temporary files left)", names, len(wantFiles))
	}
	for name, mode := range wantFiles {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Error(err)
			continue
		}
		if fi.Mode().Perm() != mode {
			t.Errorf("%s: mode %v, want %v", name, fi.Mode().Perm(), mode)
		}
	}

	ca := readCert(t, filepath.Join(dir, "ca.pem"))
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	for _, team := range []string{"payments", "platform"} {
		c := readCert(t, filepath.Join(dir, ClientCertFile(team)))
		if _, err := c.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate for %s does not verify for client auth: %v", team, err)
		}
		if c.Subject.CommonName != "ci" || !slices.Equal(c.Subject.OrganizationalUnit, []string{team}) {
			t.Errorf("client certificate for %s: subject %s", team, c.Subject)
		}
		if len(c.URIs) != 1 || c.URIs[0].String() != "spiffe://modgate.dev/team/"+team+"/ci" {
			t.Errorf("client certificate for %s: URIs %v", team, c.URIs)
		}
	}
}

// TestInitServerCertificate serves TLS with the generated server certificate
// and connects with a client that trusts only the generated CA, under each name
// the certificate is meant for.
func TestInitServerCertificate(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Init(InitOptions{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(filepath.Join(dir, ServerCertFile), filepath.Join(dir, ServerKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{Certificates: []tls.Certificate{pair}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.(*tls.Conn).Handshake()
				io.Copy(io.Discard, c)
			}()
		}
	}()
	roots := x509.NewCertPool()
	roots.AddCert(readCert(t, filepath.Join(dir, CACertFile)))

	tests := []struct {
		serverName string
		wantOK     bool
	}{
		{"localhost", true},
		{"127.0.0.1", true},
		{"::1", true},
		{"modgate.corp", false},
	}
	for _, tt := range tests {
		t.Run(tt.serverName, func(t *testing.T) {
			t.Parallel()
			conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 5 * time.Second}, "tcp", ln.Addr().String(),
				&tls.Config{RootCAs: roots, ServerName: tt.serverName})
			if err == nil {
				conn.Close()
			}
			if (err == nil) != tt.wantOK {
				t.Fatalf("handshake as %q: %v, want success %v", tt.serverName, err, tt.wantOK)
			}
		})
	}
}

func TestInitKeepsExistingFiles(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := Init(InitOptions{Dir: dir, Teams: []string{"payments"}}); err != nil {
		t.Fatal(err)
	}
	before := snapshot(t, dir)

	// Adding a team reuses the CA and leaves every existing file alone.
	written, err := Init(InitOptions{Dir: dir, Teams: []string{"payments", "platform"}})
	if err != nil {
		t.Fatal(err)
	}
	for _, w := range written {
		isNew := strings.Contains(w.Path, "platform")
		if w.Created != isNew {
			t.Errorf("%s: created %v, want %v", w.Path, w.Created, isNew)
		}
	}
	for name, data := range before {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); !bytes.Equal(got, data) {
			t.Errorf("%s was rewritten without --force", name)
		}
	}
	ca := readCert(t, filepath.Join(dir, CACertFile))
	if err := readCert(t, filepath.Join(dir, ClientCertFile("platform"))).CheckSignatureFrom(ca); err != nil {
		t.Errorf("new team's certificate is not signed by the existing CA: %v", err)
	}

	// Force replaces everything, the CA included.
	if _, err := Init(InitOptions{Dir: dir, Teams: []string{"payments"}, Force: true}); err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{CACertFile, CAKeyFile, ServerCertFile, ClientKeyFile("payments")} {
		if got, _ := os.ReadFile(filepath.Join(dir, name)); bytes.Equal(got, before[name]) {
			t.Errorf("%s was not replaced with --force", name)
		}
	}

	// Half a CA is an error, not a silent new CA that invalidates the rest.
	if err := os.Remove(filepath.Join(dir, CAKeyFile)); err != nil {
		t.Fatal(err)
	}
	if _, err := Init(InitOptions{Dir: dir}); err == nil || !strings.Contains(err.Error(), "only one of") {
		t.Errorf("Init with ca.pem but no ca.key: %v, want an error", err)
	}
}

func TestInitOptionsValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		opts    InitOptions
		wantErr string
	}{
		{name: "ok/defaults", opts: InitOptions{Dir: "d"}},
		{name: "fail/no-dir", opts: InitOptions{}, wantErr: "directory is required"},
		{name: "fail/team-with-slash", opts: InitOptions{Dir: "d", Teams: []string{"../etc"}}, wantErr: "letters, digits"},
		{name: "fail/duplicate-team", opts: InitOptions{Dir: "d", Teams: []string{"a", "a"}}, wantErr: "given twice"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := tt.opts.Validate()
			if (tt.wantErr == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), tt.wantErr)) {
				t.Fatalf("Validate: %v, want %q", err, tt.wantErr)
			}
		})
	}
}

func TestIssueOptions(t *testing.T) {
	t.Parallel()
	ca, err := NewCA("CA")
	if err != nil {
		t.Fatal(err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	clientAuth := x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}

	tests := []struct {
		name   string
		opts   []Option
		reason x509.InvalidReason // -1: verifies
	}{
		{name: "ok/default", reason: -1},
		{name: "fail/expired", opts: []Option{Expired()}, reason: x509.Expired},
		{name: "fail/not-yet-valid", opts: []Option{NotYetValid()}, reason: x509.Expired},
		{name: "fail/without-client-auth", opts: []Option{WithoutClientAuth()}, reason: x509.IncompatibleUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			leaf, err := ca.IssueClient("c", tt.opts...)
			if err != nil {
				t.Fatal(err)
			}
			_, err = leaf.Cert.Verify(clientAuth)
			if tt.reason == -1 {
				if err != nil {
					t.Fatalf("Verify: %v", err)
				}
				return
			}
			invalid, ok := err.(x509.CertificateInvalidError)
			if !ok || invalid.Reason != tt.reason {
				t.Fatalf("Verify: %v, want reason %d", err, tt.reason)
			}
		})
	}

	serial := big.NewInt(4242)
	leaf, err := ca.IssueClient("c", WithSerial(serial))
	if err != nil {
		t.Fatal(err)
	}
	der, err := ca.CRL(7, time.Now().Add(time.Hour), serial)
	if err != nil {
		t.Fatal(err)
	}
	rl, err := x509.ParseRevocationList(der)
	if err != nil {
		t.Fatal(err)
	}
	if err := rl.CheckSignatureFrom(ca.Cert); err != nil {
		t.Errorf("CRL signature: %v", err)
	}
	if len(rl.RevokedCertificateEntries) != 1 || rl.RevokedCertificateEntries[0].SerialNumber.Cmp(leaf.Cert.SerialNumber) != 0 {
		t.Errorf("CRL entries %+v, want serial %v", rl.RevokedCertificateEntries, serial)
	}
}

func readCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	certs, err := parsePEMCerts(data)
	if err != nil || len(certs) != 1 {
		t.Fatalf("%s: %d certificates, %v", path, len(certs), err)
	}
	return certs[0]
}

func parsePEMCerts(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return out, nil
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, err
		}
		out = append(out, c)
	}
}

func snapshot(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, e := range entries {
		data, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = data
	}
	return out
}
