// Package source is where module bytes come from. Each source is a Repo, shaped
// like the go command's own modfetch.Repo (versions, info of a version or query,
// latest, go.mod, zip), at the level of the GOPROXY protocol's objects: the
// public mirror chain (Public, verified against the checksum database), the
// company's git (Git) and the versions published into modgate (Published).
// Sources puts the read-through cache around them and answers a request for any
// route (internal/route); the caller never knows which source answered.
//
// Nothing here decides who may ask: the authorization gate (internal/gate) has
// done that before a source is touched.
package source

import (
	"archive/zip"
	"context"
	"fmt"
	"io"
	"os"

	modzip "golang.org/x/mod/zip"

	"github.com/modgate/modgate/internal/cache"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/verify"
)

// Object is an object's bytes as a source delivers them.
type Object = cache.Fetched

// Repo is one source of module versions. Errors are derrors kinds: NotFound for
// a module or version the source does not have, Gone for a deleted one.
type Repo interface {
	// List returns the @v/list body: the module's versions, one per line.
	List(ctx context.Context, modulePath string) (*Object, error)
	// Info returns the .info of a canonical version or of a query (a branch,
	// tag, commit prefix or version prefix).
	Info(ctx context.Context, modulePath, rev string) (*Object, error)
	// Latest returns the @latest .info.
	Latest(ctx context.Context, modulePath string) (*Object, error)
	// GoMod returns version's go.mod.
	GoMod(ctx context.Context, modulePath, version string) (*Object, error)
	// Zip returns version's module zip.
	Zip(ctx context.Context, modulePath, version string) (*Object, error)
}

// Size limits for source objects. The go command itself refuses larger .mod and
// .zip files (golang.org/x/mod/zip), so anything bigger is a source fault.
const (
	MaxInfoSize = 64 << 10
	MaxListSize = 16 << 20
	MaxModSize  = modzip.MaxGoMod
	MaxZipSize  = modzip.MaxZipFile
)

// fetch asks repo for the object req names.
func fetch(ctx context.Context, repo Repo, req goproxy.Request) (*Object, error) {
	switch req.Kind {
	case goproxy.KindList:
		return repo.List(ctx, req.Module)
	case goproxy.KindLatest:
		return repo.Latest(ctx, req.Module)
	case goproxy.KindInfo:
		return repo.Info(ctx, req.Module, req.Version)
	case goproxy.KindMod:
		return repo.GoMod(ctx, req.Module, req.Version)
	case goproxy.KindZip:
		return repo.Zip(ctx, req.Module, req.Version)
	}
	return nil, fmt.Errorf("source: unexpected request kind %v", req.Kind)
}

// checkInfo validates an .info document; for a canonical request its Version must
// be exactly the one asked for, or the go command would record a different version
// than the one it requested.
func checkInfo(want string) func(*os.File, int64) error {
	return func(f *os.File, size int64) error {
		data := make([]byte, size)
		if _, err := f.ReadAt(data, 0); err != nil {
			return fmt.Errorf("reading .info: %w", err)
		}
		info, err := goproxy.ParseInfo(data)
		if err != nil {
			return derrors.WithCause(derrors.BadUpstream, err, "upstream sent an invalid .info document")
		}
		if want != "" && info.Version != want {
			return derrors.New(derrors.BadUpstream, "upstream .info names version %q, not the requested %q", info.Version, want)
		}
		return nil
	}
}

// checkZip checks that the zip's central directory is readable. Content integrity
// is the checksum database's (public) or the ledger's (private) job; this catches
// truncated or non-zip bodies cheaply.
func checkZip(f *os.File, size int64) error {
	if _, err := zip.NewReader(io.NewSectionReader(f, 0, size), size); err != nil {
		return derrors.WithCause(derrors.BadUpstream, err, "upstream sent a corrupt module zip")
	}
	return nil
}

// both runs a and then b; either may be nil.
func both(a, b func(*os.File, int64) error) func(*os.File, int64) error {
	if a == nil {
		return b
	}
	if b == nil {
		return a
	}
	return func(f *os.File, size int64) error {
		if err := a(f, size); err != nil {
			return err
		}
		return b(f, size)
	}
}

// IsIntegrityFailure reports whether err is an integrity failure: bytes that
// contradict the checksum database (public) or the ledger (private).
func IsIntegrityFailure(err error) bool {
	return err != nil && verify.IsIntegrityFailure(err)
}
