package upstream

import (
	"crypto/tls"
	"fmt"
	"os"
	"sync"
	"time"
)

// clientCert serves a mirror's TLS client certificate and reloads it when its
// files change, so rotating an upstream client certificate needs no restart.
// The files are looked at (stat only) on each new TLS handshake, at most once a
// second; a pair that fails to load — a half-written rotation, a key that does
// not match — is not used, and the last good pair stays in service until a
// good one appears.
type clientCert struct {
	certFile, keyFile string

	mu      sync.Mutex
	cert    *tls.Certificate
	stamp   string    // size and mtime of both files when cert was loaded
	checked time.Time // last stat
	lastErr error     // the last reload failure, for tests and logs
}

func newClientCert(certFile, keyFile string) (*clientCert, error) {
	c := &clientCert{certFile: certFile, keyFile: keyFile}
	stamp, err := c.fileStamp()
	if err != nil {
		return nil, err
	}
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, err
	}
	c.cert, c.stamp, c.checked = &cert, stamp, time.Now()
	return c, nil
}

func (c *clientCert) fileStamp() (string, error) {
	a, err := os.Stat(c.certFile)
	if err != nil {
		return "", err
	}
	b, err := os.Stat(c.keyFile)
	if err != nil {
		return "", err
	}
	return fmt.Sprint(a.Size(), a.ModTime().UnixNano(), b.Size(), b.ModTime().UnixNano()), nil
}

// get is tls.Config.GetClientCertificate.
func (c *clientCert) get(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if time.Since(c.checked) >= time.Second {
		c.checked = time.Now()
		c.reloadLocked()
	}
	return c.cert, nil
}

// reload checks the files now, whatever the time of the last check.
func (c *clientCert) reload() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.checked = time.Now()
	c.reloadLocked()
	return c.lastErr
}

func (c *clientCert) reloadLocked() {
	stamp, err := c.fileStamp()
	if err != nil {
		c.lastErr = err
		return
	}
	if stamp == c.stamp {
		return
	}
	cert, err := tls.LoadX509KeyPair(c.certFile, c.keyFile)
	if err != nil {
		c.lastErr = err // keep serving the last good pair
		return
	}
	c.cert, c.stamp, c.lastErr = &cert, stamp, nil
}
