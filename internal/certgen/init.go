package certgen

import (
	"crypto"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
)

// File modes: private keys are readable by their owner only.
const (
	KeyMode  fs.FileMode = 0o600
	CertMode fs.FileMode = 0o644
)

// File names Init writes inside its directory.
const (
	CACertFile     = "ca.pem"
	CAKeyFile      = "ca.key"
	ServerCertFile = "server.pem"
	ServerKeyFile  = "server.key"
)

// ClientCertFile and ClientKeyFile name a team's client certificate files;
// team "" is the team-less client certificate.
func ClientCertFile(team string) string { return clientBase(team) + ".pem" }

// ClientKeyFile: see ClientCertFile.
func ClientKeyFile(team string) string { return clientBase(team) + ".key" }

func clientBase(team string) string {
	if team == "" {
		return "client"
	}
	return "client-" + team
}

// DefaultServerHosts are the names a development server certificate covers.
var DefaultServerHosts = []string{"localhost", "127.0.0.1", "::1"}

// InitOptions configures Init.
type InitOptions struct {
	Dir         string   // output directory, created if missing
	Teams       []string // one client certificate per team; none means one team-less client certificate
	Subject     string   // client certificates' common name; default "dev"
	Hosts       []string // server certificate names; default DefaultServerHosts
	TrustDomain string   // SPIFFE trust domain of client URIs; default "modgate.dev"
	Force       bool     // overwrite existing files (and replace the CA)
}

var teamName = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// Validate checks the options and fills in defaults.
func (o *InitOptions) Validate() error {
	if o.Dir == "" {
		return errors.New("certgen: directory is required")
	}
	if o.Subject == "" {
		o.Subject = "dev"
	}
	if len(o.Hosts) == 0 {
		o.Hosts = DefaultServerHosts
	}
	if o.TrustDomain == "" {
		o.TrustDomain = "modgate.dev"
	}
	seen := map[string]bool{}
	for _, t := range o.Teams {
		if !teamName.MatchString(t) {
			return fmt.Errorf("certgen: team %q: use letters, digits, '.', '_' and '-' only", t)
		}
		if seen[t] {
			return fmt.Errorf("certgen: team %q given twice", t)
		}
		seen[t] = true
	}
	return nil
}

// Written reports what Init did with one file.
type Written struct {
	Path    string
	Created bool // false: the file existed and was kept
}

// Init writes a development CA, a server certificate and client certificates
// into opts.Dir. Existing files are kept, never overwritten, unless opts.Force:
// an existing CA is reused so that running Init again with a new team adds that
// team's certificate without invalidating the ones already handed out.
func Init(opts InitOptions) ([]Written, error) {
	if err := opts.Validate(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(opts.Dir, 0o755); err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	path := func(name string) string { return filepath.Join(opts.Dir, name) }
	exists := func(name string) bool {
		_, err := os.Lstat(path(name))
		return err == nil
	}

	var out []Written
	var ca *CA
	caCert, caKey := exists(CACertFile), exists(CAKeyFile)
	switch {
	case !opts.Force && caCert && caKey:
		var err error
		if ca, err = LoadCA(path(CACertFile), path(CAKeyFile)); err != nil {
			return nil, err
		}
		out = append(out, Written{path(CACertFile), false}, Written{path(CAKeyFile), false})
	case !opts.Force && (caCert || caKey):
		return nil, fmt.Errorf("certgen: only one of %s and %s exists; remove it or use --force", path(CACertFile), path(CAKeyFile))
	default:
		var err error
		if ca, err = NewCA("modgate development CA", WithOrganization("modgate development")); err != nil {
			return nil, err
		}
		if err := writePair(path(CACertFile), ca.CertPEM, path(CAKeyFile), ca.KeyPEM); err != nil {
			return nil, err
		}
		out = append(out, Written{path(CACertFile), true}, Written{path(CAKeyFile), true})
	}

	type job struct {
		cert, key string
		issue     func() (*Leaf, error)
	}
	jobs := []job{{ServerCertFile, ServerKeyFile, func() (*Leaf, error) {
		return ca.IssueServer(opts.Hosts, WithOrganization("modgate development"))
	}}}
	teams := opts.Teams
	if len(teams) == 0 {
		teams = []string{""}
	}
	for _, team := range teams {
		leafOpts := []Option{WithOrganization("modgate development")}
		if team != "" {
			spiffe := fmt.Sprintf("spiffe://%s/team/%s/%s", opts.TrustDomain, url.PathEscape(team), url.PathEscape(opts.Subject))
			leafOpts = append(leafOpts, WithOU(team), WithURI(spiffe))
		}
		jobs = append(jobs, job{ClientCertFile(team), ClientKeyFile(team), func() (*Leaf, error) {
			return ca.IssueClient(opts.Subject, leafOpts...)
		}})
	}
	for _, j := range jobs {
		if !opts.Force && (exists(j.cert) || exists(j.key)) {
			out = append(out, Written{path(j.cert), false}, Written{path(j.key), false})
			continue
		}
		leaf, err := j.issue()
		if err != nil {
			return out, err
		}
		if err := writePair(path(j.cert), leaf.CertPEM, path(j.key), leaf.KeyPEM); err != nil {
			return out, err
		}
		out = append(out, Written{path(j.cert), true}, Written{path(j.key), true})
	}
	return out, nil
}

// writePair writes the key before the certificate so that a reader that polls
// for the certificate never finds it without its key.
func writePair(certPath string, certPEM []byte, keyPath string, keyPEM []byte) error {
	if err := WriteFileAtomic(keyPath, keyPEM, KeyMode); err != nil {
		return err
	}
	return WriteFileAtomic(certPath, certPEM, CertMode)
}

// WriteFileAtomic writes data to a temporary file in path's directory with the
// given mode and renames it over path, so that a process reloading the file
// sees either the old or the new content, never a partial write, and a key
// file is never readable by others even for an instant.
func WriteFileAtomic(path string, data []byte, mode fs.FileMode) (err error) {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp*")
	if err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	if err := f.Chmod(mode); err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("certgen: write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		return fmt.Errorf("certgen: sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("certgen: close %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("certgen: %w", err)
	}
	return nil
}

// LoadCA reads a CA certificate and its PKCS #8, SEC 1 or PKCS #1 private key.
func LoadCA(certPath, keyPath string) (*CA, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, fmt.Errorf("certgen: %w", err)
	}
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, fmt.Errorf("certgen: %s: no PEM CERTIFICATE block", certPath)
	}
	cert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certgen: %s is not a CA certificate", certPath)
	}
	kblock, _ := pem.Decode(keyPEM)
	if kblock == nil {
		return nil, fmt.Errorf("certgen: %s: no PEM block", keyPath)
	}
	key, err := parseKey(kblock.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certgen: %s: %w", keyPath, err)
	}
	if pub, ok := key.Public().(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(cert.PublicKey) {
		return nil, fmt.Errorf("certgen: %s does not match %s", keyPath, certPath)
	}
	return &CA{Cert: cert, Key: key, CertPEM: certPEM, KeyPEM: keyPEM}, nil
}

func parseKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("private key cannot sign")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("unsupported private key format")
}
