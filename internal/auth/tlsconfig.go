package auth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// ClientAuthMode says whether the TLS listener asks for client certificates.
type ClientAuthMode string

const (
	// ClientAuthOff ignores client certificates; callers authenticate with tokens.
	ClientAuthOff ClientAuthMode = "off"
	// ClientAuthOptional verifies a client certificate when one is presented;
	// callers without one may authenticate with a token.
	ClientAuthOptional ClientAuthMode = "optional"
	// ClientAuthRequire refuses every request that does not carry a valid
	// client certificate.
	ClientAuthRequire ClientAuthMode = "require"
)

// Where a client certificate's subject comes from.
const (
	SubjectFromCN       = "cn"        // subject common name
	SubjectFromSANURI   = "san-uri"   // first URI subject alternative name (e.g. a SPIFFE ID)
	SubjectFromSANEmail = "san-email" // first email subject alternative name
)

// Where a client certificate's teams come from.
const (
	TeamsFromOU            = "ou"              // every subject organizational unit is a team
	TeamsFromSANURIPattern = "san-uri-pattern" // URI SANs matching CertIdentityConfig.TeamPattern
)

// DefaultReloadInterval bounds how often certificate files are re-read.
const DefaultReloadInterval = time.Second

// CertIdentityConfig maps a verified client certificate to an identity.
type CertIdentityConfig struct {
	// From is where the subject comes from: "cn" (default), "san-uri" or "san-email".
	From string `yaml:"from"`
	// TeamsFrom is where teams come from: "ou" (default) or "san-uri-pattern".
	TeamsFrom string `yaml:"teams_from"`
	// TeamPattern, for "san-uri-pattern", is a URI with one "{team}" placeholder
	// matching one path segment; "*" matches anything, e.g.
	// "spiffe://corp/team/{team}/*".
	TeamPattern string `yaml:"team_pattern"`
}

// TLSConfig configures TLS termination and client-certificate authentication.
type TLSConfig struct {
	CertFile string `yaml:"cert_file"` // server certificate chain, PEM
	KeyFile  string `yaml:"key_file"`  // server private key, PEM
	// ClientCAFile is the PEM bundle of CAs whose client certificates are trusted.
	ClientCAFile string `yaml:"client_ca_file"`
	// ClientAuth is "off", "optional" or "require". Empty means "optional" when
	// ClientCAFile is set and "off" otherwise.
	ClientAuth ClientAuthMode `yaml:"client_auth"`
	// CRLFile holds certificate revocation lists (PEM or DER) signed by CAs in
	// ClientCAFile.
	CRLFile  string             `yaml:"crl_file"`
	Identity CertIdentityConfig `yaml:"identity"`
	// ReloadInterval bounds how often the files are checked for changes;
	// zero means DefaultReloadInterval.
	ReloadInterval time.Duration `yaml:"reload_interval"`
}

// Mode returns the effective client authentication mode.
func (c *TLSConfig) Mode() ClientAuthMode {
	if c.ClientAuth == "" {
		if c.ClientCAFile != "" {
			return ClientAuthOptional
		}
		return ClientAuthOff
	}
	return c.ClientAuth
}

// Validate reports the first configuration mistake.
func (c *TLSConfig) Validate() error {
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("tls: cert_file and key_file are required")
	}
	switch mode := c.Mode(); mode {
	case ClientAuthOff:
		if c.ClientCAFile != "" {
			return errors.New("tls: client_ca_file is set but client_auth is off")
		}
		if c.CRLFile != "" {
			return errors.New("tls: crl_file is set but client_auth is off")
		}
	case ClientAuthOptional, ClientAuthRequire:
		if c.ClientCAFile == "" {
			return fmt.Errorf("tls: client_auth %q needs client_ca_file", mode)
		}
	default:
		return fmt.Errorf("tls: client_auth %q: want off, optional or require", mode)
	}
	if c.ReloadInterval < 0 {
		return errors.New("tls: reload_interval must not be negative")
	}
	_, err := newCertMapper(c.Identity)
	return err
}

// ServerTLS terminates TLS for modgate's listener: it serves the current server
// certificate, verifies client certificates against the current CA bundle and
// CRL, and maps them to identities. Certificate, CA and CRL files are re-read
// when their content changes — at most once per ReloadInterval, checked lazily
// on handshakes and requests, so there is nothing to start or stop — and a file
// that fails to load leaves the last good state in place.
type ServerTLS struct {
	cfg    TLSConfig
	mode   ClientAuthMode
	mapper *certMapper
	logger *slog.Logger

	pair  *KeyPairFiles
	trust atomic.Pointer[trustState] // nil when client auth is off

	interval  time.Duration
	nextCheck atomic.Int64 // unix nanoseconds of the next due reload check

	mu         sync.Mutex // serializes reloads and guards the watchers
	trustFiles fileWatch
	trustGen   uint64

	cache verifyCache
}

// NewServerTLS validates cfg and loads the files. Unlike a later reload, a
// failure here is an error: there is no last good state to fall back to.
func NewServerTLS(cfg TLSConfig, logger *slog.Logger) (*ServerTLS, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	mapper, _ := newCertMapper(cfg.Identity) // validated above
	t := &ServerTLS{
		cfg:        cfg,
		mode:       cfg.Mode(),
		mapper:     mapper,
		logger:     logger,
		interval:   cfg.ReloadInterval,
		pair:       newKeyPairFiles("server certificate", cfg.CertFile, cfg.KeyFile, logger),
		trustFiles: fileWatch{paths: []string{cfg.ClientCAFile, cfg.CRLFile}},
	}
	if t.interval == 0 {
		t.interval = DefaultReloadInterval
	}
	if err := t.Reload(); err != nil {
		return nil, err
	}
	return t, nil
}

// Config returns the *tls.Config for the server's listener: TLS 1.2 or later,
// AEAD cipher suites only, HTTP/2 offered. Use it with
// http.Server{TLSConfig: t.Config()}.ServeTLS(listener, "", "").
//
// Client certificates are requested but not verified during the handshake: a
// refused handshake reaches the go command as an unreadable "remote error: tls:
// bad certificate", while a completed handshake lets the HTTP layer answer 401
// with the reason from IdentityFromTLS. Every request must therefore pass
// through IdentityFromTLS; a connection's certificate grants nothing by itself.
//
// The CertificateRequest carries no list of acceptable CAs on purpose: Go
// clients withhold a certificate that does not chain to a listed CA, and the
// caller would see "certificate required" instead of "not issued by a trusted CA".
func (t *ServerTLS) Config() *tls.Config {
	cfg := &tls.Config{
		MinVersion: tls.VersionTLS12,
		// TLS 1.3 suites are not configurable and all AEAD; for 1.2 only ECDHE
		// with AES-GCM or ChaCha20-Poly1305 (forward secrecy, no CBC). HTTP/2
		// (RFC 9113 §9.2.2) requires one of the AES-128-GCM suites.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		NextProtos: []string{"h2", "http/1.1"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			t.maybeReload()
			return t.pair.Certificate(), nil
		},
		ClientAuth: tls.NoClientCert,
	}
	if t.mode != ClientAuthOff {
		cfg.ClientAuth = tls.RequestClientCert
		cfg.VerifyConnection = func(cs tls.ConnectionState) error {
			// Verify now so the first request finds the result cached; the
			// outcome is reported by IdentityFromTLS, never by the handshake.
			if len(cs.PeerCertificates) > 0 {
				if _, err := t.verify(cs.PeerCertificates); err != nil {
					t.logger.Debug("tls: client certificate refused", "err", err)
				}
			}
			return nil
		}
	}
	return cfg
}

// Mode returns the effective client authentication mode.
func (t *ServerTLS) Mode() ClientAuthMode { return t.mode }

// Certificate returns the server certificate currently served.
func (t *ServerTLS) Certificate() *tls.Certificate { return t.pair.Certificate() }

// NotAfter is when the current server certificate expires.
func (t *ServerTLS) NotAfter() time.Time {
	if c := t.pair.Certificate(); c != nil && c.Leaf != nil {
		return c.Leaf.NotAfter
	}
	return time.Time{}
}

// Reload re-reads the files whose content changed, now, whatever the reload
// interval. It returns the load errors; the last good state stays in place for
// each part that failed. Call it on SIGHUP if you like; handshakes and requests
// call it anyway at most once per interval.
func (t *ServerTLS) Reload() error {
	t.nextCheck.Store(time.Now().Add(t.interval).UnixNano())
	t.mu.Lock()
	defer t.mu.Unlock()
	return errors.Join(t.reloadPair(), t.reloadTrust())
}

// maybeReload calls Reload when a check is due. One caller wins the check; the
// others carry on with the current state.
func (t *ServerTLS) maybeReload() {
	now := time.Now().UnixNano()
	due := t.nextCheck.Load()
	if now < due || !t.nextCheck.CompareAndSwap(due, now+int64(t.interval)) {
		return
	}
	t.Reload() // errors are logged by the reload functions
}

func (t *ServerTLS) reloadPair() error {
	_, err := t.pair.Reload()
	return err
}

// KeyPairFiles is a certificate and private key on disk, re-read when their
// content changes. The last good pair stays in use when the files fail to load.
type KeyPairFiles struct {
	what              string // for logs: "server certificate", "client certificate"
	certFile, keyFile string
	logger            *slog.Logger

	mu    sync.Mutex // serializes reloads and guards watch
	watch fileWatch
	pair  atomic.Pointer[tls.Certificate]
}

// LoadKeyPairFiles loads a PEM certificate chain and key; what names the pair
// in logs. Call Reload to pick up changes.
func LoadKeyPairFiles(what, certFile, keyFile string, logger *slog.Logger) (*KeyPairFiles, error) {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	k := newKeyPairFiles(what, certFile, keyFile, logger)
	if _, err := k.Reload(); err != nil {
		return nil, err
	}
	return k, nil
}

func newKeyPairFiles(what, certFile, keyFile string, logger *slog.Logger) *KeyPairFiles {
	return &KeyPairFiles{what: what, certFile: certFile, keyFile: keyFile, logger: logger,
		watch: fileWatch{paths: []string{certFile, keyFile}}}
}

// Certificate returns the current pair; Leaf is set.
func (k *KeyPairFiles) Certificate() *tls.Certificate { return k.pair.Load() }

// Reload re-reads the files and reports whether a new pair is now in use. A
// broken pair is logged and returned as an error once; the previous one stays.
func (k *KeyPairFiles) Reload() (changed bool, err error) {
	k.mu.Lock()
	defer k.mu.Unlock()
	files, changed, err := k.watch.changed()
	if err == nil && !changed {
		return false, nil
	}
	var pair tls.Certificate
	if err == nil {
		pair, err = tls.X509KeyPair(files[0], files[1])
	}
	if err == nil && pair.Leaf == nil { // GODEBUG=x509keypairleaf=0
		pair.Leaf, err = x509.ParseCertificate(pair.Certificate[0])
	}
	if err != nil {
		err = fmt.Errorf("tls: load %s %s / %s: %w", k.what, k.certFile, k.keyFile, err)
		if k.pair.Load() != nil {
			k.logger.Error("tls: keeping the previous "+k.what, "err", err)
		}
		return false, err
	}
	leaf := pair.Leaf
	k.pair.Store(&pair)
	k.logger.Info("tls: loaded "+k.what, "file", k.certFile,
		"subject", leaf.Subject.String(), "serial", leaf.SerialNumber.String(), "not_after", leaf.NotAfter)
	if time.Now().After(leaf.NotAfter) {
		k.logger.Warn("tls: "+k.what+" has expired", "file", k.certFile, "not_after", leaf.NotAfter)
	}
	return true, nil
}

func (t *ServerTLS) reloadTrust() error {
	if t.mode == ClientAuthOff {
		return nil
	}
	files, changed, err := t.trustFiles.changed()
	if err == nil && !changed {
		return nil
	}
	var ts *trustState
	if err == nil {
		ts, err = newTrustState(files[0], files[1], t.trustGen+1)
	}
	if err != nil {
		err = fmt.Errorf("tls: load client CAs %s (CRL %q): %w", t.cfg.ClientCAFile, t.cfg.CRLFile, err)
		if t.trust.Load() != nil {
			t.logger.Error("tls: keeping the previous client CAs and CRL", "err", err)
		}
		return err
	}
	t.trustGen++
	t.trust.Store(ts)
	t.logger.Info("tls: loaded client CAs", "file", t.cfg.ClientCAFile, "cas", len(ts.cas),
		"crl_file", t.cfg.CRLFile, "revoked", ts.revokedCount())
	for _, c := range ts.crls {
		if !c.nextUpdate.IsZero() && time.Now().After(c.nextUpdate) {
			// Still applied: its revocations stand, only newer ones may be missing.
			t.logger.Warn("tls: CRL is past its next update", "file", t.cfg.CRLFile, "issuer", c.issuer, "next_update", c.nextUpdate)
		}
	}
	return nil
}

// trustState is the verified view of the client CA bundle and its CRLs,
// swapped as a whole so that a CRL is never checked against the wrong CAs.
type trustState struct {
	gen   uint64
	cas   []*x509.Certificate
	roots *x509.CertPool
	crls  []*crl
}

func newTrustState(caPEM, crlData []byte, gen uint64) (*trustState, error) {
	cas, err := parseCertificates(caPEM)
	if err != nil {
		return nil, err
	}
	if len(cas) == 0 {
		return nil, errors.New("no CERTIFICATE blocks")
	}
	ts := &trustState{gen: gen, cas: cas, roots: x509.NewCertPool()}
	for _, c := range cas {
		ts.roots.AddCert(c)
	}
	if crlData != nil {
		if ts.crls, err = parseCRLs(crlData, cas); err != nil {
			return nil, err
		}
	}
	return ts, nil
}

func parseCertificates(data []byte) ([]*x509.Certificate, error) {
	var certs []*x509.Certificate
	for {
		var block *pem.Block
		block, data = pem.Decode(data)
		if block == nil {
			return certs, nil
		}
		if block.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(block.Bytes)
		if err != nil {
			return nil, fmt.Errorf("certificate %d: %w", len(certs)+1, err)
		}
		certs = append(certs, c)
	}
}

// fileWatch notices when a set of files changes content. It compares a hash of
// the contents rather than modification times, which are coarse on some file
// systems and which Kubernetes' symlink-swapping secret volumes do not update
// on the path the process reads.
type fileWatch struct {
	paths  []string // "" entries are skipped and read as nil
	sum    [sha256.Size]byte
	seen   bool
	failed string // the last read error, reported once
}

// changed reads the files and reports whether their content differs from the
// last call's, successful or not, so that a broken or missing file is reported
// once, not on every check.
func (w *fileWatch) changed() ([][]byte, bool, error) {
	files := make([][]byte, len(w.paths))
	h := sha256.New()
	for i, p := range w.paths {
		if p == "" {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			// Forget the last content: a file that comes back unchanged
			// after a failed read is loaded again.
			msg := err.Error()
			repeat := msg == w.failed
			w.failed, w.seen = msg, false
			if repeat {
				return nil, false, nil
			}
			return nil, true, err
		}
		files[i] = data
		fmt.Fprintf(h, "%d:", len(data))
		h.Write(data)
	}
	w.failed = ""
	var sum [sha256.Size]byte
	h.Sum(sum[:0])
	if w.seen && sum == w.sum {
		return files, false, nil
	}
	w.sum, w.seen = sum, true
	return files, true, nil
}

// certMapper turns a verified certificate into a subject and teams.
type certMapper struct {
	from      string
	teamsFrom string
	teamRE    *regexp.Regexp
}

func newCertMapper(c CertIdentityConfig) (*certMapper, error) {
	m := &certMapper{from: c.From, teamsFrom: c.TeamsFrom}
	if m.from == "" {
		m.from = SubjectFromCN
	}
	if m.teamsFrom == "" {
		m.teamsFrom = TeamsFromOU
	}
	switch m.from {
	case SubjectFromCN, SubjectFromSANURI, SubjectFromSANEmail:
	default:
		return nil, fmt.Errorf("tls: identity.from %q: want cn, san-uri or san-email", c.From)
	}
	switch m.teamsFrom {
	case TeamsFromOU:
		if c.TeamPattern != "" {
			return nil, errors.New("tls: identity.team_pattern is set but identity.teams_from is not san-uri-pattern")
		}
	case TeamsFromSANURIPattern:
		re, err := compileTeamPattern(c.TeamPattern)
		if err != nil {
			return nil, err
		}
		m.teamRE = re
	default:
		return nil, fmt.Errorf("tls: identity.teams_from %q: want ou or san-uri-pattern", c.TeamsFrom)
	}
	return m, nil
}

// compileTeamPattern turns "spiffe://corp/team/{team}/*" into an anchored
// regular expression: "{team}" captures one path segment, "*" matches anything,
// everything else is literal.
func compileTeamPattern(p string) (*regexp.Regexp, error) {
	if strings.Count(p, "{team}") != 1 {
		return nil, fmt.Errorf("tls: identity.team_pattern %q must contain {team} exactly once", p)
	}
	var b strings.Builder
	b.WriteString("^")
	for i, part := range strings.Split(p, "{team}") {
		if i > 0 {
			b.WriteString("([^/?#]+)")
		}
		for j, lit := range strings.Split(part, "*") {
			if j > 0 {
				b.WriteString(".*")
			}
			b.WriteString(regexp.QuoteMeta(lit))
		}
	}
	b.WriteString("$")
	return regexp.Compile(b.String())
}
