package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/verify"
)

// newVerifier builds the checksum database verifier for sumdb.verify. Its remote
// reads go through the same cache specs as the /sumdb/ proxy (sumdb.go), so a
// lookup modgate made to verify a zip is also the one the go command gets, and
// tiles are fetched once for both.
func newVerifier(s *Server, store storage.Store) (*verify.Verifier, error) {
	if !s.cfg.SumDB.Verify {
		return nil, nil
	}
	var v *verify.Verifier
	v, err := verify.New(verify.Config{
		Key:    s.cfg.SumDB.Key,
		State:  &verify.StoreState{Store: store},
		Logger: s.log,
		Remote: func(ctx context.Context, path string) ([]byte, error) {
			return s.readSumDB(ctx, v.Name(), strings.TrimPrefix(path, "/"))
		},
	})
	return v, err
}

// readSumDB reads one checksum database object through the cache.
func (s *Server) readSumDB(ctx context.Context, name, rest string) ([]byte, error) {
	spec, _, _, err := s.sumdbSpec(name, rest)
	if err != nil {
		return nil, err
	}
	e, err := s.cache.Get(ctx, spec)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	r := io.Reader(e.Stream)
	if e.Object != nil {
		r = e.Object
	}
	return io.ReadAll(io.LimitReader(r, spec.MaxSize+1))
}

// verifyBufferBelow: verified zips smaller than this are held until checked, so a
// mismatch reaches the go command as a 502 with its reason rather than as a broken
// transfer. Larger ones still stream (and abort on a mismatch).
const verifyBufferBelow = 16 << 20

// verified adds verification against the checksum database to a public .mod or
// .zip spec's Check. It runs in the cache's fetch, after the object is complete
// and before it is stored or its last byte released: a mismatch is never cached
// and never delivered whole.
func (s *Server) verified(req goproxy.Request, spec cache.Spec) cache.Spec {
	if s.verifier == nil || (req.Kind != goproxy.KindMod && req.Kind != goproxy.KindZip) ||
		s.isPrivate(req.Module) || module.MatchPrefixPatterns(s.cfg.SumDB.NoVerifyPatterns(), req.Module) {
		return spec
	}
	mod := module.Version{Path: req.Module, Version: req.Version}
	check := spec.Check
	spec.BufferBelow = verifyBufferBelow
	// Fetch and Check of one spec run in sequence on the cache's fetch goroutine,
	// so source needs no lock.
	var source string
	path, buffer := req.Path(), int64(0)
	if !spec.Stream {
		buffer = spec.MaxSize
	}
	spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) {
		resp, err := s.chain.FetchAvoiding(ctx, path, buffer, func(mirror string) bool { return s.quarantine.has(path, mirror) })
		if err != nil {
			return nil, err
		}
		source = resp.Source
		return &cache.Fetched{Body: resp.Body, Size: resp.Size, Source: resp.Source}, nil
	}
	spec.Check = func(f *os.File, size int64) (err error) {
		defer func() {
			if verify.IsIntegrityFailure(err) {
				s.m.IntegrityFailures.Inc()
			}
			if verify.IsBadBytes(err) {
				// This mirror's bytes are wrong: the next requests ask the next
				// mirror (GOPROXY-style lists usually name a second one for
				// exactly this).
				s.quarantine.add(path, source)
			}
		}()
		if check != nil {
			if err := check(f, size); err != nil {
				return err
			}
		}
		if req.Kind == goproxy.KindZip {
			err = s.verifier.CheckZip(mod, f.Name())
		} else {
			data := make([]byte, size)
			if _, rerr := f.ReadAt(data, 0); rerr != nil && !errors.Is(rerr, io.EOF) {
				return fmt.Errorf("reading .mod: %w", rerr)
			}
			err = s.verifier.CheckMod(mod, data)
		}
		return err
	}
	return spec
}

// integrityFailure reports whether a request failed an integrity check, for the
// audit outcome.
func integrityFailure(err error) bool {
	return err != nil && verify.IsIntegrityFailure(err)
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
	exp, ok := q.m[[2]string{path, mirror}]
	return ok && time.Now().Before(exp)
}
