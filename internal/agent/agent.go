// Package agent is modgate's local forwarder for the go command.
//
// The go command cannot present a TLS client certificate, so a machine that
// authenticates to modgate with one runs `modgate agent`: a plain-HTTP
// GOPROXY on the loopback interface that forwards every request to modgate
// over TLS, presenting the machine's certificate. Bodies stream both ways and
// the Authorization header passes through, so tokens from .netrc still work.
//
// Plain HTTP is acceptable only because the listener is loopback: the agent
// refuses any other listen address, and refuses requests whose Host is not a
// loopback name, which defeats DNS-rebinding pages in a local browser. Any
// local process can still use the agent, as it could read a key file readable
// by the user running it.
package agent

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/modgate/modgate/internal/auth"
)

// DefaultListen is where the agent listens unless told otherwise.
const DefaultListen = "127.0.0.1:7070"

// Config configures an Agent.
type Config struct {
	Upstream string // modgate's base URL, https only, e.g. https://modgate.corp:8443
	Listen   string // loopback host:port; default DefaultListen
	CertFile string // client certificate (PEM chain)
	KeyFile  string // client private key (PEM)
	CAFile   string // CAs that issued modgate's server certificate; empty means the system roots
	// ReloadInterval bounds how often the certificate files are checked for
	// changes; zero means auth.DefaultReloadInterval.
	ReloadInterval time.Duration
}

// Validate reports the first configuration mistake.
func (c *Config) Validate() error {
	if c.Upstream == "" {
		return errors.New("agent: upstream URL is required")
	}
	u, err := url.Parse(c.Upstream)
	if err != nil {
		return fmt.Errorf("agent: upstream: %w", err)
	}
	if u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("agent: upstream %q must be an https:// URL: the client certificate is only presented over TLS", c.Upstream)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("agent: upstream %q must not carry credentials, a query or a fragment", c.Upstream)
	}
	if c.CertFile == "" || c.KeyFile == "" {
		return errors.New("agent: client certificate and key files are required")
	}
	if c.ReloadInterval < 0 {
		return errors.New("agent: reload interval must not be negative")
	}
	listen := c.Listen
	if listen == "" {
		listen = DefaultListen
	}
	return CheckLoopback(listen)
}

// CheckLoopback accepts host:port addresses on the loopback interface only:
// a loopback IP or "localhost". An empty host (all interfaces) is refused.
func CheckLoopback(addr string) error {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("agent: listen address %q: %w", addr, err)
	}
	if !isLoopbackHost(host) {
		return fmt.Errorf("agent: listen address %q is not loopback: the agent serves plain HTTP with this machine's certificate and must listen on 127.0.0.1, ::1 or localhost only", addr)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// Agent forwards plain-HTTP GOPROXY requests from loopback to modgate over mTLS.
type Agent struct {
	cfg       Config
	upstream  *url.URL
	logger    *slog.Logger
	cert      *auth.KeyPairFiles
	transport *http.Transport
	proxy     *httputil.ReverseProxy
	interval  time.Duration
	nextCheck atomic.Int64 // unix nanoseconds of the next certificate check
}

// New validates cfg and loads the certificate files.
func New(cfg Config, logger *slog.Logger) (*Agent, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Listen == "" {
		cfg.Listen = DefaultListen
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	upstream, _ := url.Parse(cfg.Upstream) // validated
	cert, err := auth.LoadKeyPairFiles("client certificate", cfg.CertFile, cfg.KeyFile, logger)
	if err != nil {
		return nil, fmt.Errorf("agent: %w", err)
	}
	var roots *x509.CertPool // nil: system roots
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("agent: %w", err)
		}
		roots = x509.NewCertPool()
		if !roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("agent: %s holds no PEM certificates", cfg.CAFile)
		}
	}
	a := &Agent{cfg: cfg, upstream: upstream, logger: logger, cert: cert, interval: cfg.ReloadInterval}
	if a.interval == 0 {
		a.interval = auth.DefaultReloadInterval
	}
	a.nextCheck.Store(time.Now().Add(a.interval).UnixNano())
	a.transport = &http.Transport{
		Proxy:       http.ProxyFromEnvironment,
		DialContext: (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		TLSClientConfig: &tls.Config{
			MinVersion: tls.VersionTLS12,
			RootCAs:    roots,
			// Called on every handshake, so a rotated certificate is used
			// by the next new connection.
			GetClientCertificate: func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
				return a.cert.Certificate(), nil
			},
		},
		ForceAttemptHTTP2:   true,
		TLSHandshakeTimeout: 10 * time.Second,
		// `go mod download` fetches in parallel; keep those connections.
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}
	a.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			// Joins the upstream's base path and sets Host to the upstream's.
			// Rewrite (unlike Director) also drops inbound X-Forwarded-*
			// headers: nothing the local client says about itself is relayed.
			pr.SetURL(a.upstream)
		},
		Transport:    a.transport,
		ErrorHandler: a.upstreamError,
	}
	return a, nil
}

// GOPROXY is the value for the go command's GOPROXY when serving on ln.
func GOPROXY(ln net.Listener) string { return "http://" + ln.Addr().String() }

// ClientCertificate returns the certificate currently presented upstream.
func (a *Agent) ClientCertificate() *tls.Certificate { return a.cert.Certificate() }

// Handler returns the forwarding handler.
func (a *Agent) Handler() http.Handler { return http.HandlerFunc(a.serveHTTP) }

// Serve forwards requests accepted on ln until ctx is done, then shuts down
// gracefully, letting requests in flight finish for a few seconds. ln must be
// a loopback TCP listener.
func (a *Agent) Serve(ctx context.Context, ln net.Listener) error {
	tcp, ok := ln.Addr().(*net.TCPAddr)
	if !ok || !tcp.IP.IsLoopback() {
		return fmt.Errorf("agent: refusing to serve on %s: not a loopback TCP address", ln.Addr())
	}
	srv := &http.Server{
		Handler:           a.Handler(),
		ReadHeaderTimeout: 30 * time.Second,
		ErrorLog:          slog.NewLogLogger(a.logger.Handler(), slog.LevelWarn),
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("agent: %w", err)
	case <-ctx.Done():
	}
	shutdownCtx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 5*time.Second)
	defer cancel()
	err := srv.Shutdown(shutdownCtx)
	a.transport.CloseIdleConnections()
	if err != nil {
		return fmt.Errorf("agent: shutdown: %w", err)
	}
	return nil
}

func (a *Agent) serveHTTP(w http.ResponseWriter, r *http.Request) {
	// Only requests addressed to this machine's loopback name: a web page
	// that rebinds its own DNS name to 127.0.0.1 sends its own name as Host.
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if !isLoopbackHost(host) {
		http.Error(w, fmt.Sprintf("modgate agent: refusing request for host %q: address the agent as 127.0.0.1 or localhost", r.Host), http.StatusForbidden)
		return
	}
	if r.URL.IsAbs() || r.Method == http.MethodConnect {
		http.Error(w, "modgate agent: not an HTTP proxy; use it as GOPROXY", http.StatusBadRequest)
		return
	}
	a.maybeReload()
	a.proxy.ServeHTTP(w, r)
}

// maybeReload re-reads the client certificate at most once per interval and,
// when it changed, drops idle connections so that the next request handshakes
// with the new certificate instead of riding a connection made with the old.
func (a *Agent) maybeReload() {
	now := time.Now().UnixNano()
	due := a.nextCheck.Load()
	if now < due || !a.nextCheck.CompareAndSwap(due, now+int64(a.interval)) {
		return
	}
	if changed, _ := a.cert.Reload(); changed { // failures are logged by Reload
		a.transport.CloseIdleConnections()
	}
}

// upstreamError answers a request modgate could not be reached for with one
// line the go command prints. The agent runs on the user's own machine, so the
// cause (DNS, TLS, refused connection) is theirs to see.
func (a *Agent) upstreamError(w http.ResponseWriter, r *http.Request, err error) {
	if r.Context().Err() != nil {
		return // the client went away; nobody to answer
	}
	a.logger.Error("agent: upstream request failed", "method", r.Method, "path", r.URL.Path, "err", err)
	msg := strings.Join(strings.Fields(err.Error()), " ")
	http.Error(w, fmt.Sprintf("modgate agent: %s: %s", a.upstream.Redacted(), msg), http.StatusBadGateway)
}
