// Package storage keeps cached and published objects behind a small interface, so
// the cache and publish code do not care whether bytes live on a local disk or in an
// S3-compatible bucket.
//
// Every backend guarantees that a reader never sees a partial object: Put either
// installs the whole object under its key or leaves the key as it was.
package storage

import (
	"context"
	"io"
	"os"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// Store is an object store keyed by slash-separated paths.
type Store interface {
	// Open returns the object at key, or a derrors.NotFound error.
	Open(ctx context.Context, key string) (Object, error)
	// Stat returns the object's size and modification time, or derrors.NotFound.
	Stat(ctx context.Context, key string) (ObjectInfo, error)
	// Put atomically installs the contents of the local file f under key, replacing
	// any previous object. f must be positioned anywhere; Put reads it from offset 0.
	// On success the store may have taken ownership of f's path (a disk store renames
	// it); the caller still closes f.
	Put(ctx context.Context, key string, f *os.File) error
	// Delete removes key; deleting an absent key is not an error.
	Delete(ctx context.Context, key string) error
	// ScratchDir is a local directory for files that will be passed to Put; a disk
	// store returns one on its own file system so Put is a rename.
	ScratchDir() string
}

// Object is an open stored object. Seeking lets HTTP serve byte ranges.
type Object interface {
	io.ReadSeekCloser
	Info() ObjectInfo
}

// ObjectInfo describes a stored object.
type ObjectInfo struct {
	Size    int64
	ModTime time.Time
}

// CheckKey rejects keys that could escape a store's namespace. Keys come from
// validated protocol paths, so a failure here is a bug upstream of the store and is
// reported as an invalid argument rather than trusted.
func CheckKey(key string) error {
	if key == "" || len(key) > 2048 || strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\x00\\") {
		return derrors.New(derrors.InvalidArgument, "invalid storage key")
	}
	for elem := range strings.SplitSeq(key, "/") {
		if elem == "" || elem == "." || elem == ".." {
			return derrors.New(derrors.InvalidArgument, "invalid storage key")
		}
	}
	return nil
}
