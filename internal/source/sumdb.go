package source

import (
	"context"
	"io"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
)

// SumDBPath is a parsed checksum database path below /sumdb/<name>/.
type SumDBPath struct {
	Name string
	Rest string // "latest", "lookup/...", "tile/..."
	// Module and Version are set for a lookup: it names a module, and the gate
	// decides it like a pull of that module.
	Module, Version string
	ContentType     string
	immutable       bool
}

// ParseSumDBPath validates rest, a checksum database path below /sumdb/<name>/.
// Full tiles and lookups never change once published; the signed tree head
// ("latest") and partial tiles grow with the log.
func ParseSumDBPath(name, rest string) (SumDBPath, error) {
	p := SumDBPath{Name: name, Rest: rest}
	switch {
	case rest == "latest":
		p.ContentType = "text/plain; charset=utf-8"
		return p, nil
	case strings.HasPrefix(rest, "lookup/"):
		escMod, escVer, ok := strings.Cut(strings.TrimPrefix(rest, "lookup/"), "@")
		if !ok {
			return p, derrors.New(derrors.InvalidArgument, "malformed checksum database lookup")
		}
		mod, err := module.UnescapePath(escMod)
		if err != nil {
			return p, derrors.WithCause(derrors.InvalidArgument, err, "invalid module path in lookup")
		}
		ver, err := module.UnescapeVersion(escVer)
		if err != nil {
			return p, derrors.WithCause(derrors.InvalidArgument, err, "invalid version in lookup")
		}
		p.Module, p.Version = mod, ver
		p.immutable = true
		p.ContentType = "text/plain; charset=utf-8"
		return p, nil
	case strings.HasPrefix(rest, "tile/"):
		t, err := tlog.ParseTilePath(rest)
		if err != nil {
			return p, derrors.WithCause(derrors.InvalidArgument, err, "malformed checksum database tile path")
		}
		p.immutable = t.W == 1<<t.H
		p.ContentType = "application/octet-stream"
		return p, nil
	}
	return p, derrors.New(derrors.NotFound, "unknown checksum database path")
}

// Immutable reports whether the object never changes once published.
func (p SumDBPath) Immutable() bool { return p.immutable }

const maxSumDBSize = 1 << 20

func (s *Sources) sumdbSpec(p SumDBPath) cache.Spec {
	path := "sumdb/" + p.Name + "/" + p.Rest
	return cache.Spec{
		Key:       path,
		Immutable: p.immutable,
		TTL:       s.cfg.SumDBLatestTTL,
		MaxSize:   maxSumDBSize,
		Fetch: func(ctx context.Context) (*cache.Fetched, error) {
			return s.public.fetchPath(ctx, path, maxSumDBSize)
		},
	}
}

// SumDB returns a checksum database object through the cache.
func (s *Sources) SumDB(ctx context.Context, p SumDBPath) (*cache.Entry, error) {
	return s.cache.Get(ctx, s.sumdbSpec(p))
}

// ReadSumDB reads a checksum database object (path below /sumdb/<name>/) through
// the same cache entries the /sumdb/ proxy serves, so a lookup modgate made to
// verify a zip is also the one the go command gets, and tiles are fetched once
// for both. It is the verifier's remote.
func (s *Sources) ReadSumDB(ctx context.Context, name, rest string) ([]byte, error) {
	p, err := ParseSumDBPath(name, rest)
	if err != nil {
		return nil, err
	}
	e, err := s.SumDB(ctx, p)
	if err != nil {
		return nil, err
	}
	defer e.Close()
	return io.ReadAll(io.LimitReader(entryReader(e), maxSumDBSize+1))
}

func entryReader(e *cache.Entry) io.Reader {
	if e.Object != nil {
		return e.Object
	}
	return e.Stream
}
