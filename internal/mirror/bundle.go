package mirror

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
)

// BundleFormat names the bundle layout written into every manifest.
const BundleFormat = "modgate-bundle/1"

const manifestName = "manifest.json"

// Manifest is a bundle's table of contents: every object with its size and SHA-256,
// and every module version with the h1: hashes the go command records in go.sum.
type Manifest struct {
	Format  string           `json:"format"`
	Created time.Time        `json:"created"`
	Objects []ManifestObject `json:"objects"`
	Modules []ManifestModule `json:"modules"`
}

// ManifestObject is one cached object: its storage key ("mod/<escaped path>/@v/..."
// or "sumdb/<name>/...").
type ManifestObject struct {
	Key    string `json:"key"`
	Size   int64  `json:"size"`
	SHA256 string `json:"sha256"`
}

// ManifestModule is one module version in the bundle.
type ManifestModule struct {
	Path    string `json:"path"`
	Version string `json:"version"`
	ZipHash string `json:"zip_h1,omitempty"`
	ModHash string `json:"mod_h1,omitempty"`
}

// ExportOptions selects what a bundle carries. With Modules empty and Since zero,
// everything cached is exported.
type ExportOptions struct {
	// Modules are module paths (every cached version) or path@version entries.
	Modules []string
	// Since keeps only objects cached at or after this time.
	Since time.Time
	// Private reports whether a module path is private (the router's answer,
	// internal/route). Objects of private paths never leave in a bundle, even
	// ones a public mirror served before the path turned private.
	Private func(modulePath string) bool
}

// ExportSummary reports an export.
type ExportSummary struct {
	Objects int   `json:"objects"`
	Modules int   `json:"modules"`
	Bytes   int64 `json:"bytes"`
}

// Export writes the selected cached objects from the cache directory into a
// bundle at out (.tar.zst or .tar.gz by extension). Checksum database data (tree
// head, tiles, and the lookups of the exported modules) goes with it, so the
// importing side can check hashes against the checksum database's own records.
// The archive is written to a temporary name and renamed, so a failed export
// leaves no half bundle.
func Export(ctx context.Context, cacheDir, out string, opts ExportOptions) (_ ExportSummary, err error) {
	defer derrors.Wrap(&err, "mirror: export %s", out)
	root, err := filepath.Abs(cacheDir)
	if err != nil {
		return ExportSummary{}, err
	}
	sel, err := newSelector(opts)
	if err != nil {
		return ExportSummary{}, err
	}
	var keys []string
	err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(root, p)
		rel = filepath.ToSlash(rel)
		if d.IsDir() {
			if rel != "." && strings.HasPrefix(d.Name(), ".") || rel == "published" {
				return fs.SkipDir // scratch space; published private versions never leave
			}
			return nil
		}
		if !d.Type().IsRegular() || storage.CheckKey(rel) != nil {
			return nil
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if opts.Private != nil && privateKey(rel, opts.Private) {
			return nil
		}
		if sel.keep(rel, info.ModTime()) {
			keys = append(keys, rel)
		}
		return ctx.Err()
	})
	if err != nil {
		return ExportSummary{}, err
	}
	sort.Strings(keys)

	m := Manifest{Format: BundleFormat, Created: time.Now().UTC()}
	mods := map[string]*ManifestModule{}
	var sum ExportSummary
	for _, k := range keys {
		p := filepath.Join(root, filepath.FromSlash(k))
		data, size, digest, err := hashFile(p)
		if err != nil {
			return ExportSummary{}, err
		}
		m.Objects = append(m.Objects, ManifestObject{Key: k, Size: size, SHA256: digest})
		sum.Bytes += size
		mv, ext, ok := moduleObject(k)
		if !ok || (ext != ".zip" && ext != ".mod") {
			continue
		}
		mm := mods[mv.String()]
		if mm == nil {
			mm = &ManifestModule{Path: mv.Path, Version: mv.Version}
			mods[mv.String()] = mm
		}
		if ext == ".zip" {
			if mm.ZipHash, err = dirhash.HashZip(p, dirhash.Hash1); err != nil {
				return ExportSummary{}, fmt.Errorf("hashing %s: %w", k, err)
			}
		} else if mm.ModHash, err = GoModHash(data); err != nil {
			return ExportSummary{}, err
		}
	}
	for _, mm := range mods {
		m.Modules = append(m.Modules, *mm)
	}
	sort.Slice(m.Modules, func(i, j int) bool {
		a, b := m.Modules[i], m.Modules[j]
		return a.Path < b.Path || a.Path == b.Path && semver.Compare(a.Version, b.Version) < 0
	})
	sum.Objects, sum.Modules = len(m.Objects), len(m.Modules)

	tmp, err := os.CreateTemp(filepath.Dir(out), ".bundle-*")
	if err != nil {
		return ExportSummary{}, err
	}
	defer func() {
		tmp.Close()
		if err != nil {
			os.Remove(tmp.Name())
		}
	}()
	cw, err := compressor(out, tmp)
	if err != nil {
		return ExportSummary{}, err
	}
	tw := tar.NewWriter(cw)
	manifest, err := json.MarshalIndent(m, "", "  ")
	if err != nil {
		return ExportSummary{}, err
	}
	if err := writeTarFile(tw, manifestName, bytes.NewReader(manifest), int64(len(manifest))); err != nil {
		return ExportSummary{}, err
	}
	for _, o := range m.Objects {
		f, err := os.Open(filepath.Join(root, filepath.FromSlash(o.Key)))
		if err != nil {
			return ExportSummary{}, err
		}
		err = writeTarFile(tw, "objects/"+o.Key, f, o.Size)
		f.Close()
		if err != nil {
			return ExportSummary{}, err
		}
	}
	if err := tw.Close(); err != nil {
		return ExportSummary{}, err
	}
	if err := cw.Close(); err != nil {
		return ExportSummary{}, err
	}
	if err := tmp.Sync(); err != nil {
		return ExportSummary{}, err
	}
	if err := os.Rename(tmp.Name(), out); err != nil {
		return ExportSummary{}, err
	}
	return sum, nil
}

func writeTarFile(tw *tar.Writer, name string, r io.Reader, size int64) error {
	hdr := &tar.Header{Name: name, Mode: 0o644, Size: size, Typeflag: tar.TypeReg, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		return err
	}
	n, err := io.Copy(tw, r)
	if err == nil && n != size {
		err = fmt.Errorf("%s changed while being exported", name)
	}
	return err
}

// selector decides which cached keys an export carries.
type selector struct {
	all      bool
	since    time.Time
	prefixes []string // "mod/<escaped path>/@v/" or ".../@v/<escaped version>."
	lookups  []string // "lookup/<escaped path>@" or "...@<escaped version>"
}

func newSelector(opts ExportOptions) (*selector, error) {
	s := &selector{all: len(opts.Modules) == 0, since: opts.Since}
	for _, a := range opts.Modules {
		p, v, hasV := strings.Cut(strings.TrimSpace(a), "@")
		esc, err := module.EscapePath(p)
		if err != nil {
			return nil, err
		}
		prefix, lookup := "mod/"+esc+"/@v/", "lookup/"+esc+"@"
		if hasV {
			ev, err := module.EscapeVersion(v)
			if err != nil {
				return nil, err
			}
			prefix, lookup = prefix+ev+".", lookup+ev
		}
		s.prefixes = append(s.prefixes, prefix)
		s.lookups = append(s.lookups, lookup)
		if !hasV {
			s.prefixes = append(s.prefixes, "mod/"+esc+"/@latest")
		}
	}
	return s, nil
}

func (s *selector) keep(key string, mod time.Time) bool {
	if !s.since.IsZero() && mod.Before(s.since) {
		return false
	}
	if s.all {
		return strings.HasPrefix(key, "mod/") || strings.HasPrefix(key, "sumdb/")
	}
	if name, rest, ok := strings.Cut(strings.TrimPrefix(key, "sumdb/"), "/"); ok && strings.HasPrefix(key, "sumdb/") && name != "" {
		if !strings.HasPrefix(rest, "lookup/") {
			return true // tree heads and tiles: needed to check any lookup
		}
		for _, l := range s.lookups {
			if strings.HasPrefix(rest, l) && (strings.HasSuffix(l, "@") || rest == l) {
				return true
			}
		}
		return false
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(key, p) || key == p {
			return true
		}
	}
	return false
}

// moduleObject parses "mod/<esc>/@v/<escver><ext>".
func moduleObject(key string) (module.Version, string, bool) {
	rest, ok := strings.CutPrefix(key, "mod/")
	if !ok {
		return module.Version{}, "", false
	}
	escPath, file, ok := strings.Cut(rest, "/@v/")
	if !ok {
		return module.Version{}, "", false
	}
	ext := filepath.Ext(file)
	if ext != ".zip" && ext != ".mod" && ext != ".info" {
		return module.Version{}, "", false
	}
	p, err1 := module.UnescapePath(escPath)
	v, err2 := module.UnescapeVersion(strings.TrimSuffix(file, ext))
	if err1 != nil || err2 != nil {
		return module.Version{}, "", false
	}
	return module.Version{Path: p, Version: v}, ext, true
}

func hashFile(p string) (small []byte, size int64, digest string, err error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, 0, "", err
	}
	defer f.Close()
	h := sha256.New()
	var buf bytes.Buffer
	w := io.Writer(h)
	if !strings.HasSuffix(p, ".zip") {
		w = io.MultiWriter(h, &buf)
	}
	size, err = io.Copy(w, f)
	if err != nil {
		return nil, 0, "", err
	}
	return buf.Bytes(), size, hex.EncodeToString(h.Sum(nil)), nil
}

func compressor(name string, w io.Writer) (io.WriteCloser, error) {
	switch {
	case strings.HasSuffix(name, ".tar.zst"):
		return zstd.NewWriter(w)
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		return gzip.NewWriter(w), nil
	}
	return nil, errors.New("bundle name must end in .tar.zst or .tar.gz")
}

func decompressor(name string, r io.Reader) (io.Reader, func(), error) {
	switch {
	case strings.HasSuffix(name, ".tar.zst"):
		d, err := zstd.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return d, d.Close, nil
	case strings.HasSuffix(name, ".tar.gz"), strings.HasSuffix(name, ".tgz"):
		g, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, err
		}
		return g, func() { g.Close() }, nil
	}
	return nil, nil, errors.New("bundle name must end in .tar.zst or .tar.gz")
}

// privateKey reports whether a cache key holds an object of a private module:
// the git and published objects under private/, and mod/ objects of paths
// private reports private.
func privateKey(key string, private func(string) bool) bool {
	if strings.HasPrefix(key, "private/") {
		return true
	}
	rest, ok := strings.CutPrefix(key, "mod/")
	if !ok {
		return false
	}
	esc, _, ok := strings.Cut(rest, "/@")
	if !ok {
		return false
	}
	p, err := module.UnescapePath(esc)
	return err != nil || private(p)
}
