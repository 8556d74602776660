package upstream

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// MirrorConfig is one mirror with its own connection settings: a private CA, a
// client certificate for mirrors that require mTLS, Basic credentials (an internal
// Artifactory or Nexus), timeouts and a concurrency limit.
type MirrorConfig struct {
	URL string
	// FallThroughAnyError: any failure moves on to the next mirror ("|").
	FallThroughAnyError bool
	CAFile              string // PEM bundle trusted instead of the system roots
	ClientCertFile      string
	ClientKeyFile       string
	Username            string
	PasswordFile        string
	// Zero durations use the chain's Config.
	ConnectTimeout  time.Duration
	HeaderTimeout   time.Duration
	BodyIdleTimeout time.Duration
	MaxConcurrency  int // 0: unlimited
}

// NewMirror builds a chain entry from mc, reading its CA bundle, client key pair
// and password file now so a misconfiguration fails at start-up. Outbound proxies
// come from the standard environment (HTTPS_PROXY, NO_PROXY).
func NewMirror(mc MirrorConfig, base Config) (Entry, error) {
	entries, err := ParseList(mc.URL)
	if err != nil {
		return Entry{}, err
	}
	if len(entries) != 1 {
		return Entry{}, fmt.Errorf("upstream: mirror url %q must name exactly one mirror", mc.URL)
	}
	e := entries[0]
	host := e.URL.Host
	if e.URL.User != nil {
		return Entry{}, fmt.Errorf("upstream: mirror %s: put credentials in username and password_file, not the URL", host)
	}
	e.FallThroughAnyError = mc.FallThroughAnyError

	connect, header := base.ConnectTimeout, base.HeaderTimeout
	if mc.ConnectTimeout > 0 {
		connect = mc.ConnectTimeout
	}
	if mc.HeaderTimeout > 0 {
		header = mc.HeaderTimeout
	}
	e.idle = mc.BodyIdleTimeout

	tlsCfg := &tls.Config{MinVersion: tls.VersionTLS12}
	if mc.CAFile != "" {
		pem, err := os.ReadFile(mc.CAFile)
		if err != nil {
			return Entry{}, fmt.Errorf("upstream: mirror %s: reading ca_file: %w", host, err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return Entry{}, fmt.Errorf("upstream: mirror %s: ca_file %s holds no PEM certificate", host, mc.CAFile)
		}
		tlsCfg.RootCAs = pool
	}
	var cc *clientCert
	if mc.ClientCertFile != "" {
		// Reloaded when its files change (clientCert), so rotating it is no restart.
		cc, err = newClientCert(mc.ClientCertFile, mc.ClientKeyFile)
		if err != nil {
			return Entry{}, fmt.Errorf("upstream: mirror %s: loading client certificate: %w", host, err)
		}
		tlsCfg.GetClientCertificate = cc.get
	}
	if mc.Username != "" {
		b, err := os.ReadFile(mc.PasswordFile)
		if err != nil {
			return Entry{}, fmt.Errorf("upstream: mirror %s: reading password_file: %w", host, err)
		}
		e.username, e.password = mc.Username, strings.TrimRight(string(b), "\r\n")
	}
	if mc.MaxConcurrency > 0 {
		e.sem = make(chan struct{}, mc.MaxConcurrency)
	}
	transport := &http.Transport{
		Proxy:                 http.ProxyFromEnvironment,
		DialContext:           (&net.Dialer{Timeout: connect, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig:       tlsCfg,
		TLSHandshakeTimeout:   connect,
		ResponseHeaderTimeout: header,
		MaxIdleConnsPerHost:   64,
		IdleConnTimeout:       90 * time.Second,
		ForceAttemptHTTP2:     true,
	}
	var rt http.RoundTripper = transport
	if cc != nil {
		// Another origin reached by a redirect gets the same trust roots but no
		// client certificate.
		other := transport.Clone()
		other.TLSClientConfig = tlsCfg.Clone()
		other.TLSClientConfig.GetClientCertificate = nil
		rt = &originTransport{origin: e.URL, own: transport, other: other}
	}
	e.client = &http.Client{Transport: rt, CheckRedirect: checkRedirect}
	e.clientCert = cc
	return e, nil
}

// acquire takes one of the mirror's concurrency slots, waiting for one to free
// up. The returned release is safe to call more than once.
func (e Entry) acquire(ctx context.Context) (release func(), err error) {
	if e.sem == nil {
		return func() {}, nil
	}
	select {
	case e.sem <- struct{}{}:
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() { once.Do(func() { <-e.sem }) }, nil
}

// SourceUnavailable marks the offline error: no source was asked, so a stored copy
// of a mutable object (a list) is served as it is and the miss is not remembered.
type offlineCause struct{}

func (offlineCause) Error() string           { return "upstream: offline mode" }
func (offlineCause) SourceUnavailable() bool { return true }

func offlineError(path string) error {
	return derrors.WithCause(derrors.NotFound, offlineCause{}, "not found: %s is not in the offline mirror", path)
}
