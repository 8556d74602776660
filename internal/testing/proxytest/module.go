// Package proxytest is a test helper: a GOPROXY-protocol upstream built in memory
// from generated modules, with request recording and fault injection.
//
// End-to-end tests point modgate's upstream chain at a Server and run the real go
// command against modgate; the Server's recorded paths prove what modgate asked
// upstream (and that private paths never leak), and its faults drive modgate's
// timeout, retry, verification and streaming paths.
//
// The protocol served is the one in https://go.dev/ref/mod#goproxy-protocol:
//
//	<module>/@v/list
//	<module>/@v/<version>.info
//	<module>/@v/<version>.mod
//	<module>/@v/<version>.zip
//	<module>/@latest
//
// with <module> and <version> case-encoded (module.EscapePath, module.EscapeVersion).
package proxytest

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"
)

// A Module is one version of a module, described by its files.
type Module struct {
	Path    string
	Version string
	// Files maps slash-separated paths relative to the module root to contents.
	// "go.mod" is optional: without it the .mod file is synthesized as
	// "module <Path>\n", as the go command and proxy.golang.org do for modules
	// that predate modules (the +incompatible case).
	Files map[string]string
	// Time is the version's commit time reported in .info. Zero means the time
	// encoded in a pseudo-version, or else 2024-01-02T03:04:05Z.
	Time time.Time
}

// String returns "path@version".
func (m Module) String() string { return m.Path + "@" + m.Version }

// InfoTime returns the time that the .info file reports.
func (m Module) InfoTime() time.Time {
	if !m.Time.IsZero() {
		return m.Time.UTC()
	}
	if module.IsPseudoVersion(m.Version) {
		if t, err := module.PseudoVersionTime(m.Version); err == nil {
			return t.UTC()
		}
	}
	// Fixed, so that fixtures are deterministic.
	return time.Date(2024, time.January, 2, 3, 4, 5, 0, time.UTC)
}

// GoMod returns the contents of the module's .mod file: its go.mod, or the
// synthesized "module <path>" line when the module has none.
func (m Module) GoMod() []byte {
	if gm, ok := m.Files["go.mod"]; ok {
		return []byte(gm)
	}
	return []byte("module " + m.Path + "\n")
}

// Info is the JSON body of a .info or @latest response.
type Info struct {
	Version string
	Time    time.Time
}

// built holds the served bytes of one module version. The zip is built on
// first request, once: deflating the large fixture costs ~2s of CPU under the
// race detector, which tests that never fetch it should not pay.
type built struct {
	mod      Module
	info     []byte
	gomod    []byte
	sum      string // h1: of the zip
	goModSum string // h1: of the .mod

	zipOnce sync.Once
	zip     []byte
	zipErr  error
}

func build(m Module) (*built, error) {
	// DirHash runs the zip.Create file checks, so an invalid module fails here
	// rather than at its first .zip request.
	sum, err := DirHash(m)
	if err != nil {
		return nil, err
	}
	info, err := json.Marshal(Info{Version: m.Version, Time: m.InfoTime()})
	if err != nil {
		return nil, fmt.Errorf("proxytest: module %s: %w", m, err)
	}
	gomod := m.GoMod()
	goModSum, err := goModHash(gomod)
	if err != nil {
		return nil, fmt.Errorf("proxytest: module %s: %w", m, err)
	}
	return &built{mod: m, info: info, gomod: gomod, sum: sum, goModSum: goModSum}, nil
}

// zipBytes returns the module zip, building it on first use.
func (b *built) zipBytes() ([]byte, error) {
	b.zipOnce.Do(func() { b.zip, b.zipErr = Zip(b.mod) })
	return b.zip, b.zipErr
}

// Zip returns the module zip exactly as the Server serves it, built with
// golang.org/x/mod/zip.Create.
func Zip(m Module) ([]byte, error) {
	var zbuf bytes.Buffer
	if err := modzip.Create(&zbuf, module.Version{Path: m.Path, Version: m.Version}, zipFiles(m)); err != nil {
		return nil, fmt.Errorf("proxytest: module %s: zip: %w", m, err)
	}
	return zbuf.Bytes(), nil
}

// DirHash returns the "h1:" hash of the module's zip, the value the go command
// writes to go.sum and reports as Sum in `go mod download -json`.
func DirHash(m Module) (string, error) {
	if err := module.Check(m.Path, m.Version); err != nil {
		return "", fmt.Errorf("proxytest: module %s: %w", m, err)
	}
	// Hash exactly the files zip.Create keeps, without deflating them: the result
	// equals dirhash.HashZip of the served zip (TestDirHashMatchesServedZip).
	checked, err := modzip.CheckFiles(zipFiles(m))
	if err == nil {
		err = checked.Err()
	}
	if err != nil {
		return "", fmt.Errorf("proxytest: module %s: %w", m, err)
	}
	prefix := m.String() + "/"
	var names []string
	for _, f := range checked.Valid {
		names = append(names, prefix+f)
	}
	sum, err := dirhash.Hash1(names, func(name string) (io.ReadCloser, error) {
		return io.NopCloser(strings.NewReader(m.Files[strings.TrimPrefix(name, prefix)])), nil
	})
	if err != nil {
		return "", fmt.Errorf("proxytest: module %s: %w", m, err)
	}
	return sum, nil
}

// GoModHash returns the "h1:" hash of the module's .mod file, the value of the
// go.sum line "<path> <version>/go.mod h1:..." and of GoModSum in
// `go mod download -json`.
func GoModHash(m Module) (string, error) {
	return goModHash(m.GoMod())
}

func goModHash(gomod []byte) (string, error) {
	// The go command hashes the .mod file as a one-file tree named "go.mod"
	// (cmd/go/internal/modfetch.checkGoMod).
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(gomod)), nil
	})
}

// zipFiles lists the module's files for zip.Create, sorted so the zip is
// byte-for-byte deterministic.
func zipFiles(m Module) []modzip.File {
	names := make([]string, 0, len(m.Files))
	for name := range m.Files {
		names = append(names, name)
	}
	slices.Sort(names)
	files := make([]modzip.File, 0, len(names))
	for _, name := range names {
		files = append(files, memFile{name: name, data: m.Files[name]})
	}
	return files
}

// memFile is an in-memory regular file for zip.Create.
type memFile struct {
	name string
	data string
}

func (f memFile) Path() string                 { return f.name }
func (f memFile) Lstat() (fs.FileInfo, error)  { return memInfo(f), nil }
func (f memFile) Open() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(f.data)), nil }

type memInfo memFile

func (i memInfo) Name() string       { return i.name[strings.LastIndex(i.name, "/")+1:] }
func (i memInfo) Size() int64        { return int64(len(i.data)) }
func (i memInfo) Mode() fs.FileMode  { return 0o644 }
func (i memInfo) ModTime() time.Time { return time.Time{} }
func (i memInfo) IsDir() bool        { return false }
func (i memInfo) Sys() any           { return nil }
