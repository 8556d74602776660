package source

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"slices"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/route"
)

// Ledger is the private version ledger (internal/ledger): the h1: hashes first
// served for each private module version, by file ("mod" or "zip").
type Ledger interface {
	// Pin records h1 the first time (module, version, file) is seen. When a
	// different hash is recorded it returns an error of kind derrors.Integrity
	// whose message names both hashes and the recorded source.
	Pin(ctx context.Context, module, version, file, h1, source string) error
	// Recorded returns what is recorded for module@version, nothing when the
	// version was never served.
	Recorded(ctx context.Context, module, version string) ([]Pinned, error)
}

// Pinned is one recorded hash.
type Pinned struct {
	File, Hash, Source string
}

// HashZip returns the h1: hash of a module zip, as go.sum records it.
func HashZip(f *os.File, size int64) (string, error) {
	return dirhash.HashZip(f.Name(), dirhash.Hash1)
}

// HashMod returns the h1: hash of a go.mod file, as go.sum records it for
// "module version/go.mod": dirhash.Hash1 over a single file named go.mod.
func HashMod(r io.Reader) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(r), nil
	})
}

// Publishable refuses (derrors.Conflict, 409, naming the recorded source) a
// publish of modulePath@version that git already has as a tag, or whose bytes
// differ from what the ledger recorded for the version from another source.
// Publishing the same bytes again is allowed: the registry answers it as
// identical.
func (s *Sources) Publishable(ctx context.Context, rt route.Route, modulePath, version, modHash, zipHash string) error {
	if rt == route.Git && s.git != nil {
		versions, err := s.git.Versions(ctx, modulePath)
		if err != nil && !errors.Is(err, derrors.NotFound) {
			return derrors.WithCause(derrors.Unavailable, err, "cannot check git for %s@%s before publishing it; try again", modulePath, version)
		}
		if slices.Contains(versions, version) {
			return derrors.New(derrors.Conflict, "%s@%s exists as a git tag: a version in git cannot be published (publish a new version instead)", modulePath, version)
		}
	}
	if s.ledger == nil {
		return nil
	}
	recorded, err := s.ledger.Recorded(ctx, modulePath, version)
	if err != nil {
		return err
	}
	for _, p := range recorded {
		want := zipHash
		if p.File == "mod" {
			want = modHash
		}
		if p.Hash != want {
			return derrors.New(derrors.Conflict, "%s@%s was already served from %s with %s %s; this publish has %s: a released version never changes (publish a new version instead)",
				modulePath, version, p.Source, p.File, p.Hash, want)
		}
	}
	return nil
}

// PinPublished records a published version's hashes in the ledger.
func (s *Sources) PinPublished(ctx context.Context, modulePath, version, modHash, zipHash string) error {
	if s.ledger == nil {
		return nil
	}
	if err := s.ledger.Pin(ctx, modulePath, version, "mod", modHash, "published"); err != nil {
		return err
	}
	return s.ledger.Pin(ctx, modulePath, version, "zip", zipHash, "published")
}

// Hashes returns the h1: hashes of modulePath@version's go.mod and zip and the
// zip's size, as rt's sources serve them (through the cache): what a deleted
// git version's tombstone records.
func (s *Sources) Hashes(ctx context.Context, rt route.Route, modulePath, version string) (modHash, zipHash string, size int64, err error) {
	escMod, err := module.EscapePath(modulePath)
	if err != nil {
		return "", "", 0, err
	}
	escVer, err := module.EscapeVersion(version)
	if err != nil {
		return "", "", 0, err
	}
	req := goproxy.Request{Kind: goproxy.KindMod, Module: modulePath, EscapedModule: escMod, Version: version, EscapedVersion: escVer}
	mod, err := s.readSmall(ctx, s.spec(rt, req))
	if err != nil {
		return "", "", 0, err
	}
	if modHash, err = HashMod(bytes.NewReader(mod)); err != nil {
		return "", "", 0, err
	}
	req.Kind = goproxy.KindZip
	e, err := s.Get(ctx, rt, req)
	if err != nil {
		return "", "", 0, err
	}
	defer e.Close()
	f, err := os.CreateTemp(s.cache.Store().ScratchDir(), "hash-*.zip")
	if err != nil {
		return "", "", 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if size, err = io.Copy(f, entryReader(e)); err != nil {
		return "", "", 0, err
	}
	if zipHash, err = HashZip(f, size); err != nil {
		return "", "", 0, err
	}
	return modHash, zipHash, size, nil
}
