package source

import (
	"context"
	"slices"

	"golang.org/x/mod/sumdb/tlog"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/verify"
)

// NewSumDBAnswers returns the checker of the answers of the checksum database
// that key names, or nil when that database is not among the proxied names.
func NewSumDBAnswers(key string, proxied []string) (*verify.Answers, error) {
	if key == "" {
		return nil, nil
	}
	a, err := verify.NewAnswers(key)
	if err != nil {
		return nil, err
	}
	if !slices.Contains(proxied, a.Name()) {
		return nil, nil
	}
	return a, nil
}

// sumdbChecked makes spec's fetch check the database's answer before the cache
// stores it: a lookup or a full tile is stored for ever, so a forged or garbled
// one from a mirror would otherwise break every request for that module until
// an operator removed it. An answer that fails is not cached, the next mirror is
// asked (upstream.Chain.FetchChecked), and nothing about the failure is
// remembered, so a repaired mirror is used on the next request.
func (s *Sources) sumdbChecked(spec cache.Spec, p SumDBPath) cache.Spec {
	a := s.cfg.SumDBAnswers
	if a == nil || p.Name != a.Name() {
		return spec
	}
	chain := s.public.chain
	read := func(ctx context.Context, t tlog.Tile) ([]byte, error) {
		return s.ReadSumDB(ctx, p.Name, t.Path())
	}
	var check func(ctx context.Context, data []byte) error
	switch {
	case p.Rest == "latest":
		check = func(_ context.Context, data []byte) error { return a.CheckLatest(data) }
	case p.Module != "":
		check = func(ctx context.Context, data []byte) error {
			return a.CheckLookup(ctx, p.Module, p.Version, data, read)
		}
	default:
		t, err := tlog.ParseTilePath(p.Rest)
		if err != nil || t.L < 0 {
			// Data tiles (the go command never asks for them) are not checked,
			// so they are kept only for the TTL of a mutable object.
			spec.Immutable = false
			return spec
		}
		refresh := func(ctx context.Context) error {
			_, err := chain.FetchChecked(ctx, "sumdb/"+p.Name+"/latest", maxSumDBSize, a.CheckLatest)
			return err
		}
		check = func(ctx context.Context, data []byte) error {
			return a.CheckTile(ctx, t, data, read, refresh)
		}
	}
	path := spec.Key
	spec.Fetch = func(ctx context.Context) (*cache.Fetched, error) {
		resp, err := chain.FetchChecked(ctx, path, maxSumDBSize, func(data []byte) error { return check(ctx, data) })
		if err != nil {
			return nil, err
		}
		return &cache.Fetched{Body: resp.Body, Size: resp.Size, Source: resp.Source}, nil
	}
	return spec
}
