package auth

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"time"
)

// crl is a certificate revocation list whose signature has been checked
// against a CA in the client CA bundle.
type crl struct {
	issuer     string // for logs
	rawIssuer  []byte // the CRL issuer's DER-encoded name
	issuerSPKI []byte // the public key that signed it
	nextUpdate time.Time
	revoked    map[string]bool // serial numbers, as decimal strings
}

// parseCRLs reads one DER CRL or any number of PEM "X509 CRL" blocks and checks
// each signature against the CA in cas whose subject is the CRL's issuer. A CRL
// nobody in cas signed is an error: applying an unauthenticated CRL would let
// whoever can write the file decide revocation, and ignoring it silently would
// hide a misconfiguration that leaves revoked certificates accepted.
func parseCRLs(data []byte, cas []*x509.Certificate) ([]*crl, error) {
	var ders [][]byte
	if bytes.Contains(data, []byte("-----BEGIN")) {
		rest := data
		for {
			var block *pem.Block
			block, rest = pem.Decode(rest)
			if block == nil {
				break
			}
			if block.Type == "X509 CRL" {
				ders = append(ders, block.Bytes)
			}
		}
		if len(ders) == 0 {
			return nil, fmt.Errorf("CRL file: no X509 CRL PEM blocks")
		}
	} else {
		ders = [][]byte{data}
	}

	var out []*crl
	for i, der := range ders {
		rl, err := x509.ParseRevocationList(der)
		if err != nil {
			return nil, fmt.Errorf("CRL %d: %w", i+1, err)
		}
		signer := crlSigner(rl, cas)
		if signer == nil {
			return nil, fmt.Errorf("CRL %d (issuer %q): not signed by any client CA", i+1, rl.Issuer.String())
		}
		c := &crl{
			issuer:     rl.Issuer.String(),
			rawIssuer:  rl.RawIssuer,
			issuerSPKI: signer.RawSubjectPublicKeyInfo,
			nextUpdate: rl.NextUpdate,
			revoked:    make(map[string]bool, len(rl.RevokedCertificateEntries)),
		}
		for _, e := range rl.RevokedCertificateEntries {
			c.revoked[e.SerialNumber.String()] = true
		}
		out = append(out, c)
	}
	return out, nil
}

func crlSigner(rl *x509.RevocationList, cas []*x509.Certificate) *x509.Certificate {
	for _, ca := range cas {
		if bytes.Equal(ca.RawSubject, rl.RawIssuer) && rl.CheckSignatureFrom(ca) == nil {
			return ca
		}
	}
	return nil
}

// revoked reports the first certificate of a verified chain (leaf first) that a
// CRL from its issuer lists. The CRL must come from the very key that signed the
// certificate, not merely a CA of the same name.
func (ts *trustState) revoked(chain []*x509.Certificate) *x509.Certificate {
	for i := 0; i+1 < len(chain); i++ {
		cert, issuer := chain[i], chain[i+1]
		for _, c := range ts.crls {
			if bytes.Equal(c.rawIssuer, cert.RawIssuer) &&
				bytes.Equal(c.issuerSPKI, issuer.RawSubjectPublicKeyInfo) &&
				c.revoked[cert.SerialNumber.String()] {
				return cert
			}
		}
	}
	return nil
}

func (ts *trustState) revokedCount() int {
	n := 0
	for _, c := range ts.crls {
		n += len(c.revoked)
	}
	return n
}
