package source

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/metrics"
	"github.com/modgate/modgate/internal/upstream"
	"github.com/modgate/modgate/internal/verify"
)

// Public is the upstream mirror chain as a Repo. Its .mod and .zip objects are
// verified against the checksum database (Check) before they are cached.
type Public struct {
	chain *upstream.Chain
	// verifier is nil when sumdb.verify is off; noVerify are the GONOSUMDB-style
	// patterns of public modules it skips.
	verifier *verify.Verifier
	noVerify string
	m        *metrics.Metrics
	// quarantine passes over mirrors that served an object failing verification.
	quarantine quarantine
}

// NewPublic returns the public source over chain. verifier may be nil.
func NewPublic(chain *upstream.Chain, verifier *verify.Verifier, noVerifyPatterns string, m *metrics.Metrics) *Public {
	return &Public{chain: chain, verifier: verifier, noVerify: noVerifyPatterns, m: m}
}

// Chain returns the upstream chain.
func (p *Public) Chain() *upstream.Chain { return p.chain }

// SetVerifier sets the checksum database verifier. The verifier reads the
// checksum database through the cache and this chain, so it is built after them.
func (p *Public) SetVerifier(v *verify.Verifier) { p.verifier = v }

func (p *Public) List(ctx context.Context, mod string) (*Object, error) {
	return p.get(ctx, mod, "@v/list", MaxListSize)
}

func (p *Public) Latest(ctx context.Context, mod string) (*Object, error) {
	return p.get(ctx, mod, "@latest", MaxInfoSize)
}

func (p *Public) Info(ctx context.Context, mod, rev string) (*Object, error) {
	return p.getVersion(ctx, mod, rev, ".info", MaxInfoSize)
}

func (p *Public) GoMod(ctx context.Context, mod, version string) (*Object, error) {
	return p.getVersion(ctx, mod, version, ".mod", MaxModSize)
}

// Zip streams: its body is not buffered by the chain.
func (p *Public) Zip(ctx context.Context, mod, version string) (*Object, error) {
	return p.getVersion(ctx, mod, version, ".zip", 0)
}

func (p *Public) getVersion(ctx context.Context, mod, version, ext string, buffer int64) (*Object, error) {
	esc, err := module.EscapeVersion(version)
	if err != nil {
		return nil, err
	}
	return p.get(ctx, mod, "@v/"+esc+ext, buffer)
}

func (p *Public) get(ctx context.Context, mod, rest string, buffer int64) (*Object, error) {
	esc, err := module.EscapePath(mod)
	if err != nil {
		return nil, err
	}
	return p.fetchPath(ctx, esc+"/"+rest, buffer)
}

// fetchPath fetches a GOPROXY path (no leading slash) from the chain, asking
// mirrors quarantined for that path last.
func (p *Public) fetchPath(ctx context.Context, path string, buffer int64) (*Object, error) {
	resp, err := p.chain.FetchAvoiding(ctx, path, buffer, func(mirror string) bool { return p.quarantine.has(path, mirror) })
	if err != nil {
		return nil, err
	}
	return &Object{Body: resp.Body, Size: resp.Size, Source: resp.Source}, nil
}

// waitCloser closes a body, then waits for work started alongside it.
type waitCloser struct {
	io.ReadCloser
	wait func()
}

func (w *waitCloser) Close() error {
	err := w.ReadCloser.Close()
	w.wait()
	return err
}

// verifyBufferBelow: verified zips smaller than this are held until checked, so a
// mismatch reaches the go command as a 502 with its reason rather than as a broken
// transfer. Larger ones still stream (and abort on a mismatch).
const verifyBufferBelow = 16 << 20

// verified adds verification against the checksum database to a public .mod or
// .zip spec's Check. It runs in the cache's fetch, after the object is complete
// and before it is stored or its last byte released: a mismatch is never cached
// and never delivered whole.
func (p *Public) verified(req goproxy.Request, spec cache.Spec) cache.Spec {
	if p.verifier == nil || (req.Kind != goproxy.KindMod && req.Kind != goproxy.KindZip) ||
		(p.noVerify != "" && module.MatchPrefixPatterns(p.noVerify, req.Module)) {
		return spec
	}
	mod := module.Version{Path: req.Module, Version: req.Version}
	check, fetchObj := spec.Check, spec.Fetch
	spec.BufferBelow = verifyBufferBelow
	// Fetch and Check of one spec run in sequence on the cache's fetch goroutine,
	// so mirror needs no lock.
	var mirror string
	spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) {
		// The fill ends (closing the body) only after the lookup it started,
		// on failure too: no lookup outlives the request that asked for it,
		// still storing checksum-database answers after it has been answered.
		wait := p.verifier.Prefetch(mod)
		o, err := fetchObj(ctx)
		if o == nil || err != nil {
			wait()
			return o, err
		}
		mirror = o.Source
		o.Body = &waitCloser{ReadCloser: o.Body, wait: wait}
		return o, nil
	}
	path := req.Path()
	spec.Check = func(f *os.File, size int64) (err error) {
		defer func() {
			if verify.IsIntegrityFailure(err) {
				p.m.IntegrityFailures.Inc()
			}
			if verify.IsBadBytes(err) {
				// This mirror's bytes are wrong: the next requests ask the next
				// mirror (GOPROXY-style lists usually name a second one for
				// exactly this).
				p.quarantine.add(path, mirror)
			}
		}()
		if check != nil {
			if err := check(f, size); err != nil {
				return err
			}
		}
		if req.Kind == goproxy.KindZip {
			return p.verifier.CheckZip(mod, f.Name())
		}
		data := make([]byte, size)
		if _, rerr := f.ReadAt(data, 0); rerr != nil && !errors.Is(rerr, io.EOF) {
			return fmt.Errorf("reading .mod: %w", rerr)
		}
		return p.verifier.CheckMod(mod, data)
	}
	return spec
}

// quarantineTTL is how long a mirror that served an object failing verification is
// asked for that object only after the others. Long enough for a build's retries to reach the
// next mirror; short enough that a repaired mirror is used again.
const quarantineTTL = 10 * time.Minute

// quarantine remembers (object, mirror) pairs that failed verification. It only
// reorders the chain: what any mirror serves is verified regardless.
type quarantine struct {
	mu sync.Mutex
	m  map[[2]string]time.Time // expiry
}

func (q *quarantine) add(path, mirror string) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.m == nil {
		q.m = make(map[[2]string]time.Time)
	}
	now := time.Now()
	for k, exp := range q.m {
		if now.After(exp) {
			delete(q.m, k)
		}
	}
	q.m[[2]string{path, mirror}] = now.Add(quarantineTTL)
}

func (q *quarantine) has(path, mirror string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.m) == 0 {
		return false
	}
	exp, ok := q.m[[2]string{path, mirror}]
	return ok && time.Now().Before(exp)
}
