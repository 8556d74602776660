package ledger

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"

	"golang.org/x/mod/sumdb/dirhash"
)

// Files a version has in the ledger.
const (
	Mod = "mod" // the .mod file: go.sum's "<module> <version>/go.mod h1:" line
	Zip = "zip" // the module zip: go.sum's "<module> <version> h1:" line
)

// HashFile returns the h1: hash go.sum records for a version's file ("mod" or
// "zip") whose bytes are the first size bytes of r. It takes an io.ReaderAt so
// that it runs on a cache fill file (cache.Spec.Check) without reopening it.
func HashFile(file string, r io.ReaderAt, size int64) (string, error) {
	switch file {
	case Zip:
		return HashZip(r, size)
	case Mod:
		return HashMod(io.NewSectionReader(r, 0, size))
	}
	return "", fmt.Errorf("ledger: unknown file kind %q", file)
}

// HashZip is golang.org/x/mod/sumdb/dirhash.HashZip(name, dirhash.Hash1) on a
// zip held in r: the hash the go command checks a downloaded module zip against.
func HashZip(r io.ReaderAt, size int64) (string, error) {
	z, err := zip.NewReader(r, size)
	if err != nil {
		return "", fmt.Errorf("ledger: hashing zip: %w", err)
	}
	// As dirhash.HashZip: every entry by name; Hash1 sorts them and rejects names
	// with newlines.
	files := make([]string, 0, len(z.File))
	byName := make(map[string]*zip.File, len(z.File))
	for _, f := range z.File {
		files = append(files, f.Name)
		byName[f.Name] = f
	}
	h, err := dirhash.Hash1(files, func(name string) (io.ReadCloser, error) {
		f := byName[name]
		if f == nil {
			return nil, fmt.Errorf("file %q not found in zip", name)
		}
		return f.Open()
	})
	if err != nil {
		return "", fmt.Errorf("ledger: hashing zip: %w", err)
	}
	return h, nil
}

// HashMod returns the h1: hash of a go.mod file exactly as the go command writes
// go.sum's "/go.mod h1:" lines: dirhash.Hash1 over one file named "go.mod"
// (cmd/go/internal/modfetch.checkGoMod).
func HashMod(r io.Reader) (string, error) {
	data, err := io.ReadAll(r)
	if err != nil {
		return "", fmt.Errorf("ledger: hashing go.mod: %w", err)
	}
	return HashModBytes(data)
}

// HashModBytes is HashMod of data.
func HashModBytes(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}
