package server

import (
	"context"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/verify"
)

// newSumDBAnswers returns the checker of the answers of the database sumdb.key
// names, when it is one of the proxied databases.
func newSumDBAnswers(key string, proxied map[string]bool) (*verify.Answers, error) {
	if key == "" {
		return nil, nil
	}
	a, err := verify.NewAnswers(key)
	if err != nil {
		return nil, err
	}
	if !proxied[a.Name()] {
		return nil, nil
	}
	return a, nil
}

// sumdbCheckedFetch makes spec's fetch check the database's answer before the
// cache stores it: a lookup or a full tile is stored for ever, so a forged or
// garbled one from a mirror would otherwise break every request for that module
// until an operator removed it. An answer that fails is not cached, the next
// mirror is asked (upstream.Chain.FetchChecked), and nothing about the failure is
// remembered, so a repaired mirror is used on the next request. rest is the path
// below /sumdb/<name>/; modPath and version are set for lookups.
func (s *Server) sumdbCheckedFetch(spec cache.Spec, name, rest, modPath, version string) cache.Spec {
	a := s.sumdbAnswers
	if a == nil || name != a.Name() {
		return spec
	}
	var check func(ctx context.Context, data []byte) error
	switch {
	case rest == "latest":
		check = func(_ context.Context, data []byte) error { return a.CheckLatest(data) }
	case modPath != "":
		check = func(ctx context.Context, data []byte) error {
			return a.CheckLookup(ctx, modPath, version, data, s.sumdbTileReader(name))
		}
	default:
		t, err := tlog.ParseTilePath(rest)
		if err != nil || t.L < 0 {
			// Data tiles (the go command never asks for them) are not checked,
			// so they are kept only for the TTL of a mutable object.
			spec.Immutable = false
			return spec
		}
		check = func(ctx context.Context, data []byte) error {
			return a.CheckTile(ctx, t, data, s.sumdbTileReader(name), func(ctx context.Context) error {
				_, err := s.chain.FetchChecked(ctx, "sumdb/"+name+"/latest", spec.MaxSize, a.CheckLatest)
				return err
			})
		}
	}
	path, max := "sumdb/"+name+"/"+rest, spec.MaxSize
	spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) {
		resp, err := s.chain.FetchChecked(ctx, path, max, func(data []byte) error { return check(ctx, data) })
		if err != nil {
			return nil, err
		}
		return &cache.Fetched{Body: resp.Body, Size: resp.Size, Source: resp.Source}, nil
	}
	return spec
}

// sumdbTileReader reads tiles through the cache, where each was checked before
// it was stored.
func (s *Server) sumdbTileReader(name string) verify.TileReader {
	return func(ctx context.Context, t tlog.Tile) ([]byte, error) {
		return s.readSumDB(ctx, name, t.Path())
	}
}
