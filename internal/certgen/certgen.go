// Package certgen issues X.509 certificates for modgate: a development CA, server
// certificates and per-team client certificates, and certificate revocation lists.
//
// It backs `modgate certs init` and is the one place tests build their
// certificates, so that the certificates tests exercise are the ones developers
// run with. Keys are ECDSA P-256: small, fast to generate, accepted everywhere.
package certgen

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"time"
)

// Default lifetimes. A development CA outlives the leaves it signs so that
// re-issuing a leaf never requires redistributing the CA.
const (
	CALifetime   = 10 * 365 * 24 * time.Hour
	LeafLifetime = 825 * 24 * time.Hour // the CA/Browser Forum ceiling macOS enforces
)

// clockSkew backdates NotBefore so that a certificate is valid on machines whose
// clocks are slightly behind the one that issued it.
const clockSkew = 5 * time.Minute

// CA is a certificate authority: a self-signed certificate and its key.
type CA struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte
	KeyPEM  []byte
}

// Leaf is an issued certificate and its key.
type Leaf struct {
	Cert    *x509.Certificate
	Key     crypto.Signer
	CertPEM []byte // the leaf only; the CA is distributed separately
	KeyPEM  []byte
}

// Fingerprint is the hex SHA-256 of the certificate's DER encoding, the form
// modgate records as identity.Identity.CertFingerprint.
func (l *Leaf) Fingerprint() string {
	sum := sha256.Sum256(l.Cert.Raw)
	return hex.EncodeToString(sum[:])
}

// TLSCertificate is the leaf and its key in the form crypto/tls presents.
func (l *Leaf) TLSCertificate() tls.Certificate {
	return tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
}

// Pool is a certificate pool holding only the CA, for RootCAs or ClientCAs.
func (ca *CA) Pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(ca.Cert)
	return pool
}

// options collects what Option functions set.
type options struct {
	notBefore, notAfter time.Time
	serial              *big.Int
	ous                 []string
	org                 []string
	uris                []string
	emails              []string
	dnsNames            []string
	ips                 []net.IP
	extKeyUsage         []x509.ExtKeyUsage
	extKeyUsageSet      bool
	keyUsage            x509.KeyUsage
	keyUsageSet         bool
}

// Option adjusts a certificate being issued.
type Option func(*options)

// WithValidity sets the validity window.
func WithValidity(notBefore, notAfter time.Time) Option {
	return func(o *options) { o.notBefore, o.notAfter = notBefore, notAfter }
}

// Expired makes a certificate whose validity ended an hour ago.
func Expired() Option {
	now := time.Now()
	return WithValidity(now.Add(-48*time.Hour), now.Add(-time.Hour))
}

// NotYetValid makes a certificate whose validity starts in a day.
func NotYetValid() Option {
	now := time.Now()
	return WithValidity(now.Add(24*time.Hour), now.Add(48*time.Hour))
}

// WithSerial sets the serial number instead of a random one.
func WithSerial(serial *big.Int) Option {
	return func(o *options) { o.serial = new(big.Int).Set(serial) }
}

// WithOU adds organizational units to the subject; modgate can map them to teams.
func WithOU(ous ...string) Option {
	return func(o *options) { o.ous = append(o.ous, ous...) }
}

// WithOrganization adds organizations to the subject.
func WithOrganization(orgs ...string) Option {
	return func(o *options) { o.org = append(o.org, orgs...) }
}

// WithURI adds URI subject alternative names, e.g. SPIFFE IDs.
func WithURI(uris ...string) Option {
	return func(o *options) { o.uris = append(o.uris, uris...) }
}

// WithEmail adds email subject alternative names.
func WithEmail(emails ...string) Option {
	return func(o *options) { o.emails = append(o.emails, emails...) }
}

// WithHosts adds DNS names or IP addresses as subject alternative names.
func WithHosts(hosts ...string) Option {
	return func(o *options) {
		for _, h := range hosts {
			if ip := net.ParseIP(h); ip != nil {
				o.ips = append(o.ips, ip)
			} else {
				o.dnsNames = append(o.dnsNames, h)
			}
		}
	}
}

// WithExtKeyUsage replaces the extended key usages. WithExtKeyUsage() with no
// arguments leaves the extension out entirely.
func WithExtKeyUsage(usages ...x509.ExtKeyUsage) Option {
	return func(o *options) { o.extKeyUsage, o.extKeyUsageSet = usages, true }
}

// WithoutClientAuth makes a client certificate that carries only the serverAuth
// extended key usage, which a server must refuse for client authentication.
func WithoutClientAuth() Option {
	return WithExtKeyUsage(x509.ExtKeyUsageServerAuth)
}

// WithKeyUsage replaces the key usage bits.
func WithKeyUsage(ku x509.KeyUsage) Option {
	return func(o *options) { o.keyUsage, o.keyUsageSet = ku, true }
}

func collect(defaultLifetime time.Duration, opts []Option) options {
	now := time.Now()
	o := options{notBefore: now.Add(-clockSkew), notAfter: now.Add(defaultLifetime)}
	for _, opt := range opts {
		opt(&o)
	}
	return o
}

func newKey() (*ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certgen: generate key: %w", err)
	}
	return key, nil
}

// randomSerial returns a positive 128-bit serial number, as RFC 5280 §4.1.2.2 and
// the CA/Browser Forum baseline (at least 64 bits of entropy) require.
func randomSerial() (*big.Int, error) {
	limit := new(big.Int).Lsh(big.NewInt(1), 128)
	serial, err := rand.Int(rand.Reader, limit)
	if err != nil {
		return nil, fmt.Errorf("certgen: serial: %w", err)
	}
	return serial.Add(serial, big.NewInt(1)), nil
}

// NewCA creates a self-signed certificate authority named commonName.
func NewCA(commonName string, opts ...Option) (*CA, error) {
	o := collect(CALifetime, opts)
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(commonName, o)
	if err != nil {
		return nil, err
	}
	tmpl.IsCA = true
	tmpl.BasicConstraintsValid = true
	tmpl.MaxPathLenZero = true // leaves only: a development CA has no business delegating
	tmpl.KeyUsage = x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature
	if o.keyUsageSet {
		tmpl.KeyUsage = o.keyUsage
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certgen: create CA certificate: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certgen: parse CA certificate: %w", err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &CA{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

// IssueServer issues a server certificate for hosts (DNS names or IP addresses).
// The first host is also the subject common name, for old clients that read it.
func (ca *CA) IssueServer(hosts []string, opts ...Option) (*Leaf, error) {
	if len(hosts) == 0 {
		return nil, fmt.Errorf("certgen: server certificate needs at least one host")
	}
	opts = append([]Option{WithHosts(hosts...)}, opts...)
	return ca.issue(hosts[0], []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, opts)
}

// IssueClient issues a client certificate whose subject common name is commonName.
// Add teams with WithOU or WithURI, and break it on purpose with Expired or
// WithoutClientAuth.
func (ca *CA) IssueClient(commonName string, opts ...Option) (*Leaf, error) {
	return ca.issue(commonName, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, opts)
}

func (ca *CA) issue(commonName string, eku []x509.ExtKeyUsage, opts []Option) (*Leaf, error) {
	o := collect(LeafLifetime, opts)
	key, err := newKey()
	if err != nil {
		return nil, err
	}
	tmpl, err := template(commonName, o)
	if err != nil {
		return nil, err
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	if o.keyUsageSet {
		tmpl.KeyUsage = o.keyUsage
	}
	tmpl.ExtKeyUsage = eku
	if o.extKeyUsageSet {
		tmpl.ExtKeyUsage = o.extKeyUsage
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certgen: create certificate %q: %w", commonName, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certgen: parse certificate %q: %w", commonName, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return &Leaf{Cert: cert, Key: key, CertPEM: encodeCert(der), KeyPEM: keyPEM}, nil
}

func template(commonName string, o options) (*x509.Certificate, error) {
	serial := o.serial
	if serial == nil {
		var err error
		if serial, err = randomSerial(); err != nil {
			return nil, err
		}
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject: pkix.Name{
			CommonName:         commonName,
			Organization:       o.org,
			OrganizationalUnit: o.ous,
		},
		NotBefore:      o.notBefore,
		NotAfter:       o.notAfter,
		DNSNames:       o.dnsNames,
		IPAddresses:    o.ips,
		EmailAddresses: o.emails,
	}
	for _, raw := range o.uris {
		u, err := url.Parse(raw)
		if err != nil {
			return nil, fmt.Errorf("certgen: URI SAN %q: %w", raw, err)
		}
		tmpl.URIs = append(tmpl.URIs, u)
	}
	return tmpl, nil
}

// CRL returns a DER-encoded certificate revocation list signed by the CA that
// revokes the given serial numbers. number must grow with each CRL the CA
// publishes (RFC 5280 §5.2.3); nextUpdate says when relying parties should expect
// the next one.
func (ca *CA) CRL(number int64, nextUpdate time.Time, revoked ...*big.Int) ([]byte, error) {
	now := time.Now()
	entries := make([]x509.RevocationListEntry, 0, len(revoked))
	for _, serial := range revoked {
		entries = append(entries, x509.RevocationListEntry{SerialNumber: serial, RevocationTime: now.Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{
		Number:                    big.NewInt(number),
		ThisUpdate:                now.Add(-clockSkew),
		NextUpdate:                nextUpdate,
		RevokedCertificateEntries: entries,
	}, ca.Cert, ca.Key)
	if err != nil {
		return nil, fmt.Errorf("certgen: create CRL: %w", err)
	}
	return der, nil
}

// CRLPEM is CRL encoded as PEM ("X509 CRL" block).
func (ca *CA) CRLPEM(number int64, nextUpdate time.Time, revoked ...*big.Int) ([]byte, error) {
	der, err := ca.CRL(number, nextUpdate, revoked...)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "X509 CRL", Bytes: der}), nil
}

func encodeCert(der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

func encodeKey(key *ecdsa.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certgen: encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}
