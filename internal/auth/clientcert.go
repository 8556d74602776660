package auth

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// Reasons a client certificate is refused. Each is the one line the client sees
// (the go command prints it after "server response:"), distinct so that the
// person at the keyboard knows whether to renew, re-issue or ask for help.
const (
	ReasonCertRequired  = "client certificate required"
	ReasonExpired       = "client certificate expired"
	ReasonNotYetValid   = "client certificate not yet valid"
	ReasonUnknownCA     = "client certificate not issued by a trusted CA"
	ReasonNoClientAuth  = "client certificate lacks clientAuth extended key usage"
	ReasonRevoked       = "client certificate revoked"
	ReasonInvalid       = "client certificate invalid"
	ReasonNoCertSubject = "client certificate carries no subject for this server"
)

// IdentityFromTLS returns the identity that the connection's client
// certificate establishes. Call it for every request with r.TLS.
//
//   - nil, nil: no certificate identity — TLS is off for this request, client
//     auth is off, or (in optional mode) no certificate was presented; the
//     caller may authenticate another way (a token).
//   - nil, err: a derrors.Unauthenticated error whose public message is one of
//     the Reason constants — answer 401 with it; the cause is for the log. A
//     presented but invalid certificate is refused in optional mode too, rather
//     than silently ignored, so that a broken certificate is noticed.
//   - id, nil: a verified certificate; Method is identity.MethodMTLS.
//
// Results are cached per certificate chain, so the cost per request after the
// first is a hash of the presented certificates.
func (t *ServerTLS) IdentityFromTLS(state *tls.ConnectionState) (*identity.Identity, error) {
	if state == nil || t.mode == ClientAuthOff {
		return nil, nil
	}
	if len(state.PeerCertificates) == 0 {
		if t.mode == ClientAuthRequire {
			return nil, derrors.New(derrors.Unauthenticated, ReasonCertRequired)
		}
		return nil, nil
	}
	// Requests on a long-lived connection still see a new CA bundle or CRL.
	t.maybeReload()
	return t.verify(state.PeerCertificates)
}

// verify checks a presented chain (leaf first) against the current trust state
// and maps it to an identity, consulting and filling the cache.
func (t *ServerTLS) verify(certs []*x509.Certificate) (*identity.Identity, error) {
	ts := t.trust.Load()
	now := time.Now()
	key := chainKey(certs)
	if id, err, ok := t.cache.get(key, ts.gen, now); ok {
		return id.clone(), err
	}
	id, err := t.verifyUncached(ts, certs, now)
	t.cache.put(key, ts.gen, certs[0], now, id, err)
	return id.clone(), err
}

func (t *ServerTLS) verifyUncached(ts *trustState, certs []*x509.Certificate, now time.Time) (*cachedIdentity, error) {
	leaf := certs[0]
	intermediates := x509.NewCertPool()
	for _, c := range certs[1:] {
		intermediates.AddCert(c)
	}
	chains, err := leaf.Verify(x509.VerifyOptions{
		Roots:         ts.roots,
		Intermediates: intermediates,
		CurrentTime:   now,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
	if err != nil {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("client certificate %s: %w", describe(leaf), err), "%s", verifyReason(err, now))
	}
	for _, chain := range chains {
		if c := ts.revoked(chain); c != nil {
			return nil, derrors.WithCause(derrors.Unauthenticated,
				fmt.Errorf("client certificate %s: serial %s of %q is listed in the CRL", describe(leaf), c.SerialNumber, c.Subject.String()), ReasonRevoked)
		}
	}
	subject, teams, err := t.mapper.identity(leaf)
	if err != nil {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("client certificate %s: %w", describe(leaf), err), ReasonNoCertSubject)
	}
	sum := sha256.Sum256(leaf.Raw)
	return &cachedIdentity{id: identity.Identity{
		Subject:         subject,
		Teams:           teams,
		Method:          identity.MethodMTLS,
		CertFingerprint: hex.EncodeToString(sum[:]),
	}}, nil
}

// verifyReason names why x509 verification failed. Go checks the leaf's
// validity period before building chains and key usages after, so a
// certificate that is both expired and from an unknown CA reads as expired —
// the more actionable of the two.
func verifyReason(err error, now time.Time) string {
	var invalid x509.CertificateInvalidError
	if errors.As(err, &invalid) {
		switch invalid.Reason {
		case x509.Expired:
			if invalid.Cert != nil && now.Before(invalid.Cert.NotBefore) {
				return ReasonNotYetValid
			}
			return ReasonExpired
		case x509.IncompatibleUsage:
			return ReasonNoClientAuth
		}
		return ReasonInvalid
	}
	var unknown x509.UnknownAuthorityError
	if errors.As(err, &unknown) {
		return ReasonUnknownCA
	}
	return ReasonInvalid
}

func describe(c *x509.Certificate) string {
	return fmt.Sprintf("%q (serial %s, issuer %q)", c.Subject.String(), c.SerialNumber.String(), c.Issuer.String())
}

// identity maps a verified leaf to a subject and teams.
func (m *certMapper) identity(leaf *x509.Certificate) (string, []string, error) {
	var subject string
	switch m.from {
	case SubjectFromCN:
		subject = leaf.Subject.CommonName
	case SubjectFromSANURI:
		if len(leaf.URIs) > 0 {
			subject = leaf.URIs[0].String()
		}
	case SubjectFromSANEmail:
		if len(leaf.EmailAddresses) > 0 {
			subject = leaf.EmailAddresses[0]
		}
	}
	if subject == "" {
		return "", nil, fmt.Errorf("no subject: identity.from is %s", m.from)
	}

	var teams []string
	add := func(team string) {
		if team != "" && !slices.Contains(teams, team) {
			teams = append(teams, team)
		}
	}
	switch m.teamsFrom {
	case TeamsFromOU:
		for _, ou := range leaf.Subject.OrganizationalUnit {
			add(ou)
		}
	case TeamsFromSANURIPattern:
		for _, u := range leaf.URIs {
			if match := m.teamRE.FindStringSubmatch(u.String()); match != nil {
				team, err := url.PathUnescape(match[1])
				if err != nil {
					continue
				}
				add(team)
			}
		}
	}
	return subject, teams, nil
}

// chainKey identifies a presented chain. Hashing every certificate, not only
// the leaf, keeps a cached verdict tied to the intermediates it was reached with.
func chainKey(certs []*x509.Certificate) [sha256.Size]byte {
	h := sha256.New()
	for _, c := range certs {
		fmt.Fprintf(h, "%d:", len(c.Raw))
		h.Write(c.Raw)
	}
	var key [sha256.Size]byte
	h.Sum(key[:0])
	return key
}

// cachedIdentity is a verified identity that hands out copies, so that a
// caller appending to Teams cannot change what the next request sees.
type cachedIdentity struct{ id identity.Identity }

func (c *cachedIdentity) clone() *identity.Identity {
	if c == nil {
		return nil
	}
	id := c.id
	id.Teams = slices.Clone(c.id.Teams)
	id.Scopes = slices.Clone(c.id.Scopes)
	return &id
}

// Cache bounds. A verdict is reused for at most verifyCacheTTL so that time
// keeps moving for it (a certificate that expires mid-connection is refused on
// the next request after its NotAfter regardless), and the map is dropped when
// it outgrows verifyCacheMax entries: a simple bound, cheap to refill.
const (
	verifyCacheTTL = time.Minute
	verifyCacheMax = 4096
)

// verifyCache remembers verification verdicts per presented chain and trust
// generation, so that requests on a connection — and connections resuming a
// session — do not repeat chain verification.
type verifyCache struct {
	mu      sync.RWMutex
	entries map[[sha256.Size]byte]verdict
}

type verdict struct {
	gen     uint64
	expires time.Time
	id      *cachedIdentity
	err     error
}

func (c *verifyCache) get(key [sha256.Size]byte, gen uint64, now time.Time) (*cachedIdentity, error, bool) {
	c.mu.RLock()
	v, ok := c.entries[key]
	c.mu.RUnlock()
	if !ok || v.gen != gen || !now.Before(v.expires) {
		return nil, nil, false
	}
	return v.id, v.err, true
}

func (c *verifyCache) put(key [sha256.Size]byte, gen uint64, leaf *x509.Certificate, now time.Time, id *cachedIdentity, err error) {
	expires := now.Add(verifyCacheTTL)
	if leaf.NotAfter.Before(expires) && now.Before(leaf.NotAfter) {
		expires = leaf.NotAfter
	}
	if now.Before(leaf.NotBefore) && leaf.NotBefore.Before(expires) {
		expires = leaf.NotBefore
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil || len(c.entries) >= verifyCacheMax {
		c.entries = make(map[[sha256.Size]byte]verdict)
	}
	c.entries[key] = verdict{gen: gen, expires: expires, id: id, err: err}
}
