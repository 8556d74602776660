// Package upstream fetches protocol objects from an ordered chain of upstream module
// mirrors, following the go command's GOPROXY list semantics.
package upstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/metrics"
)

// Entry is one mirror in the chain.
type Entry struct {
	URL *url.URL
	// FallThroughAnyError is true when the entry was followed by "|" in the GOPROXY
	// list: any error moves on to the next mirror. After "," only 404 and 410 do, so
	// an outage of the first mirror surfaces instead of silently using the next.
	FallThroughAnyError bool

	// Per-mirror connection settings (NewMirror); zero values use the chain's.
	client   *http.Client
	sem      chan struct{} // bounds concurrent requests; nil is unlimited
	username string
	password string
	idle     time.Duration
	// clientCert is the mirror's reloadable TLS client certificate, if any.
	clientCert *clientCert
}

// Name is the mirror's URL without credentials, for logs, metrics and audit.
func (e Entry) Name() string {
	u := *e.URL
	u.User = nil
	return u.String()
}

// ParseList parses a GOPROXY-style list ("https://a,https://b|https://c"). The
// keywords "direct" and "off" are dropped: modgate never fetches from version
// control for public modules, and an empty chain means "nothing upstream".
func ParseList(s string) ([]Entry, error) {
	var entries []Entry
	for s != "" {
		i := strings.IndexAny(s, ",|")
		item, sep := s, byte(0)
		if i >= 0 {
			item, sep, s = s[:i], s[i], s[i+1:]
		} else {
			s = ""
		}
		item = strings.TrimSpace(item)
		if item == "" || item == "direct" || item == "off" {
			continue
		}
		u, err := url.Parse(item)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, fmt.Errorf("upstream: invalid mirror URL %q: need http(s)://host[/path]", item)
		}
		u.Path = strings.TrimSuffix(u.Path, "/")
		entries = append(entries, Entry{URL: u, FallThroughAnyError: sep == '|'})
	}
	return entries, nil
}

// Config tunes the chain's network behaviour.
type Config struct {
	ConnectTimeout  time.Duration // dial + TLS handshake
	HeaderTimeout   time.Duration // request sent → response headers
	BodyIdleTimeout time.Duration // longest pause between body reads
	Retries         int           // extra attempts per mirror on 429, 5xx and network errors
	RetryBackoff    time.Duration // first backoff; doubles per attempt, with jitter
	UserAgent       string
	// Offline answers every fetch with a not-found "not in the offline mirror"
	// without contacting any mirror, so only cached objects are served.
	Offline bool
}

// Chain is an ordered list of mirrors.
type Chain struct {
	entries []Entry
	cfg     Config
	client  *http.Client
	log     *slog.Logger
	m       *metrics.Metrics
}

// NewChain returns a chain over entries. A nil transport uses a tuned default.
func NewChain(entries []Entry, cfg Config, transport http.RoundTripper, log *slog.Logger, m *metrics.Metrics) *Chain {
	if transport == nil {
		transport = &http.Transport{
			Proxy:                 http.ProxyFromEnvironment,
			DialContext:           (&net.Dialer{Timeout: cfg.ConnectTimeout, KeepAlive: 30 * time.Second}).DialContext,
			TLSHandshakeTimeout:   cfg.ConnectTimeout,
			ResponseHeaderTimeout: cfg.HeaderTimeout,
			MaxIdleConnsPerHost:   64,
			IdleConnTimeout:       90 * time.Second,
			ForceAttemptHTTP2:     true,
		}
	}
	if cfg.UserAgent == "" {
		cfg.UserAgent = "modgate"
	}
	return &Chain{entries: entries, cfg: cfg, client: &http.Client{Transport: transport, CheckRedirect: checkRedirect}, log: log, m: m}
}

// Entries returns the chain's mirrors in order.
func (c *Chain) Entries() []Entry { return c.entries }

// Response is a successful upstream answer. The caller must close Body.
type Response struct {
	Body   io.ReadCloser
	Size   int64  // Content-Length, or -1 when the mirror did not say
	Source string // the mirror's name
}

// Fetch asks the chain for path (an escaped protocol path such as
// "github.com/x/y/@v/list"). It returns derrors.NotFound or derrors.Gone when the
// mirrors say so, derrors.BadUpstream / derrors.UpstreamTimeout when they fail.
//
// With buffer > 0 the whole body (at most buffer bytes) is read before Fetch
// returns, so a transfer that breaks mid-body counts as that mirror's failure and
// is retried or falls through like any other. That is right for small objects;
// zips stream (buffer 0), and a broken zip transfer fails the request.
func (c *Chain) Fetch(ctx context.Context, path string, buffer int64) (*Response, error) {
	return c.fetch(ctx, c.entries, path, buffer)
}

// FetchAvoiding is Fetch asking the mirrors for which avoid(name) is true only
// after the others have failed: for an object a mirror recently served corrupted
// or substituted, the next mirror is asked first, but a chain whose every mirror
// is avoided still tries them (the caller verifies what it gets anyway).
func (c *Chain) FetchAvoiding(ctx context.Context, path string, buffer int64, avoid func(name string) bool) (*Response, error) {
	if avoid == nil {
		return c.fetch(ctx, c.entries, path, buffer)
	}
	var preferred, avoided []Entry
	for _, e := range c.entries {
		if avoid(e.Name()) {
			avoided = append(avoided, e)
		} else {
			preferred = append(preferred, e)
		}
	}
	if len(avoided) == 0 || len(preferred) == 0 {
		return c.fetch(ctx, c.entries, path, buffer)
	}
	resp, err := c.fetch(ctx, preferred, path, buffer)
	if err == nil || ctx.Err() != nil {
		return resp, err
	}
	c.log.DebugContext(ctx, "upstream: trying mirrors that recently failed verification", "path", path, "err", err)
	return c.fetch(ctx, avoided, path, buffer)
}

func (c *Chain) fetch(ctx context.Context, entries []Entry, path string, buffer int64) (*Response, error) {
	if c.cfg.Offline {
		return nil, offlineError(path)
	}
	if len(entries) == 0 {
		return nil, derrors.New(derrors.NotFound, "not found: no upstream mirror configured")
	}
	var lastErr error
	for _, e := range entries {
		resp, err := c.fetchOne(ctx, e, path, buffer)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if ctx.Err() != nil {
			return nil, err
		}
		if errors.Is(err, derrors.NotFound) || errors.Is(err, derrors.Gone) || e.FallThroughAnyError {
			continue
		}
		return nil, err
	}
	return nil, lastErr
}

func (c *Chain) fetchOne(ctx context.Context, e Entry, path string, buffer int64) (*Response, error) {
	backoff := c.cfg.RetryBackoff
	for attempt := 0; ; attempt++ {
		resp, retryAfter, err := c.try(ctx, e, path)
		if err == nil {
			if buffer > 0 {
				resp, err = readAll(resp, buffer)
			} else {
				resp, err = peek(resp)
			}
		}
		if err == nil || attempt >= c.cfg.Retries || retryAfter < 0 {
			return resp, err
		}
		wait := backoff + time.Duration(rand.Int64N(int64(backoff)/2+1))
		if retryAfter > wait {
			wait = min(retryAfter, 10*backoff)
		}
		c.log.DebugContext(ctx, "upstream retry", "upstream", e.Name(), "path", path, "attempt", attempt+1, "wait", wait, "err", err)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(wait):
		}
		backoff *= 2
	}
}

// try makes one request. retryAfter < 0 means the error is final for this mirror.
func (c *Chain) try(ctx context.Context, e Entry, path string) (_ *Response, retryAfter time.Duration, _ error) {
	// Protocol paths are already escaped (module.EscapePath) and contain only bytes
	// that are legal in a URL path, so they are appended as they are.
	u := *e.URL
	u.Path, u.RawPath = e.URL.Path+"/"+path, ""
	rctx, cancel := context.WithCancel(ctx)
	req, err := http.NewRequestWithContext(rctx, http.MethodGet, u.String(), nil)
	if err != nil {
		cancel()
		return nil, -1, fmt.Errorf("upstream: %w", err)
	}
	req.Header.Set("User-Agent", c.cfg.UserAgent)
	if e.username != "" {
		req.SetBasicAuth(e.username, e.password)
	}
	name := e.Name()
	client, idle := c.client, c.cfg.BodyIdleTimeout
	if e.client != nil {
		client = e.client
	}
	if e.idle > 0 {
		idle = e.idle
	}
	release, err := e.acquire(rctx)
	if err != nil {
		cancel()
		return nil, -1, err
	}
	start := time.Now()
	resp, err := client.Do(req)
	c.m.UpstreamLatency.WithLabelValues(name).Observe(time.Since(start).Seconds())
	if err != nil {
		release()
		cancel()
		if ctx.Err() != nil {
			return nil, -1, ctx.Err()
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			c.m.UpstreamFetches.WithLabelValues(name, "timeout").Inc()
			return nil, 0, derrors.WithCause(derrors.UpstreamTimeout, err, "upstream mirror timed out")
		}
		c.m.UpstreamFetches.WithLabelValues(name, "error").Inc()
		return nil, 0, derrors.WithCause(derrors.BadUpstream, err, "upstream mirror unreachable")
	}
	switch {
	case resp.StatusCode == http.StatusOK:
		c.m.UpstreamFetches.WithLabelValues(name, "ok").Inc()
		// The concurrency slot is held until the body is closed: a transfer in
		// progress is load on the mirror.
		body := newIdleTimeoutBody(resp.Body, idle, func() { cancel(); release() })
		return &Response{Body: body, Size: resp.ContentLength, Source: name}, 0, nil
	case resp.StatusCode == http.StatusNotFound || resp.StatusCode == http.StatusGone:
		msg := readMessage(resp.Body)
		resp.Body.Close()
		cancel()
		release()
		c.m.UpstreamFetches.WithLabelValues(name, "not_found").Inc()
		kind := derrors.NotFound
		if resp.StatusCode == http.StatusGone {
			kind = derrors.Gone
		}
		if msg == "" {
			msg = strings.ToLower(http.StatusText(resp.StatusCode))
		}
		return nil, -1, derrors.New(kind, "%s", msg)
	default:
		resp.Body.Close()
		cancel()
		release()
		c.m.UpstreamFetches.WithLabelValues(name, "error").Inc()
		err := derrors.New(derrors.BadUpstream, "upstream mirror answered %d %s", resp.StatusCode, http.StatusText(resp.StatusCode))
		if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode >= 500 {
			return nil, parseRetryAfter(resp.Header.Get("Retry-After")), err
		}
		return nil, -1, err
	}
}

// readMessage reads the first line of an error body, keeping it short and
// printable: it is relayed to the client, and an upstream must not be able to inject
// terminal escapes or extra lines into what the go command prints.
func readMessage(r io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(r, 512))
	line, _, _ := strings.Cut(string(b), "\n")
	line = strings.Map(func(r rune) rune {
		if r == unicode.ReplacementChar || !unicode.IsPrint(r) {
			return -1
		}
		return r
	}, line)
	return strings.TrimSpace(line)
}

func parseRetryAfter(v string) time.Duration {
	if v == "" {
		return 0
	}
	if s, err := strconv.Atoi(v); err == nil && s >= 0 {
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil {
		return time.Until(t)
	}
	return 0
}

// readAll replaces resp's body with its bytes in memory.
func readAll(resp *Response, limit int64) (*Response, error) {
	defer resp.Body.Close()
	if resp.Size > limit {
		return nil, derrors.New(derrors.BadUpstream, "upstream object is %d bytes, over the %d-byte limit", resp.Size, limit)
	}
	data, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, derrors.New(derrors.BadUpstream, "upstream object exceeds the %d-byte limit", limit)
	}
	if resp.Size >= 0 && int64(len(data)) != resp.Size {
		return nil, derrors.New(derrors.BadUpstream, "upstream sent %d of %d bytes", len(data), resp.Size)
	}
	return &Response{Body: io.NopCloser(bytes.NewReader(data)), Size: int64(len(data)), Source: resp.Source}, nil
}

// peek reads the first bytes of a streamed body, so a mirror that answers 200 and
// then breaks before sending anything counts as failed and the chain moves on;
// once bytes flow, a failure can only end the transfer.
func peek(resp *Response) (*Response, error) {
	buf := make([]byte, 32<<10)
	n, err := io.ReadAtLeast(resp.Body, buf, 1)
	if err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, io.ErrUnexpectedEOF) {
		resp.Body.Close()
		return nil, err
	}
	return &Response{
		Body:   readCloser{io.MultiReader(bytes.NewReader(buf[:n]), resp.Body), resp.Body},
		Size:   resp.Size,
		Source: resp.Source,
	}, nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

// FetchChecked is Fetch for small objects whose content can be checked (a
// checksum database answer against its signed tree): the whole body (at most
// buffer bytes) is read and passed to check, and an answer that fails it moves on
// to the next mirror whatever the list's separators say — a mirror that serves a
// forged answer is as unusable as one that is down. Nothing about the failure is
// remembered: a repaired mirror is used again on the very next request. The error
// is check's, from the last mirror that answered, when every mirror's answer
// failed it.
func (c *Chain) FetchChecked(ctx context.Context, path string, buffer int64, check func([]byte) error) (*Response, error) {
	entries := c.entries
	var checkErr error
	for len(entries) > 0 {
		resp, err := c.fetch(ctx, entries, path, buffer)
		if err != nil {
			if checkErr != nil {
				return nil, checkErr
			}
			return nil, err
		}
		data, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err == nil {
			err = check(data)
		}
		if err == nil {
			resp.Body, resp.Size = io.NopCloser(bytes.NewReader(data)), int64(len(data))
			return resp, nil
		}
		c.log.WarnContext(ctx, "upstream: answer failed its check; trying the next mirror", "path", path, "mirror", resp.Source, "err", err)
		checkErr = err
		i := 0
		for i < len(entries) && entries[i].Name() != resp.Source {
			i++
		}
		entries = entries[min(i+1, len(entries)):]
	}
	return nil, checkErr
}
