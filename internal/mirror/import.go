package mirror

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/storage"
)

// ImportSummary reports an import.
type ImportSummary struct {
	Objects   int `json:"objects"`
	Installed int `json:"installed"`
	Unchanged int `json:"unchanged"`
	Modules   int `json:"modules"`
	// SumDBChecked counts module versions whose hashes were also matched against
	// a checksum database lookup carried in the bundle.
	SumDBChecked int `json:"sumdb_checked"`
}

// ErrBundleRejected marks a bundle that failed verification; nothing of it was
// installed.
var ErrBundleRejected = errors.New("bundle rejected")

// Import verifies the bundle at path and installs its objects into store. It is
// all-or-nothing: every object is first extracted into a staging directory and
// checked — its size and SHA-256 against the manifest, every zip's and go.mod's h1:
// hash against the manifest, every .info against its version, and the hashes
// against the checksum database lookups the bundle carries — and only a bundle
// that passes entirely is installed. Installing is idempotent: objects already
// stored with the same bytes are left alone, and a version list is merged with the
// one already cached rather than replacing it.
func Import(ctx context.Context, store storage.Store, path string) (_ ImportSummary, err error) {
	defer derrors.Wrap(&err, "mirror: import %s", filepath.Base(path))
	staging, err := os.MkdirTemp(store.ScratchDir(), "bundle-import-")
	if err != nil {
		return ImportSummary{}, err
	}
	defer os.RemoveAll(staging)

	m, staged, err := extract(ctx, path, staging)
	if err != nil {
		return ImportSummary{}, fmt.Errorf("%w: %v", ErrBundleRejected, err)
	}
	checked, err := verify(m, staged)
	if err != nil {
		return ImportSummary{}, fmt.Errorf("%w: %v", ErrBundleRejected, err)
	}
	sum := ImportSummary{Objects: len(m.Objects), Modules: len(m.Modules), SumDBChecked: checked}
	for _, o := range m.Objects {
		changed, err := install(ctx, store, o, staged[o.Key])
		if err != nil {
			return sum, fmt.Errorf("installing %s (after %d objects): %w", o.Key, sum.Installed, err)
		}
		if changed {
			sum.Installed++
		} else {
			sum.Unchanged++
		}
	}
	return sum, nil
}

// extract reads the archive into dir, checking each object's size and SHA-256
// against the manifest (which must come first) as it streams.
func extract(ctx context.Context, path, dir string) (*Manifest, map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	r, closeR, err := decompressor(path, bufio.NewReader(f))
	if err != nil {
		return nil, nil, err
	}
	defer closeR()
	tr := tar.NewReader(r)
	hdr, err := tr.Next()
	if err != nil || hdr.Name != manifestName {
		return nil, nil, fmt.Errorf("the first entry must be %s", manifestName)
	}
	var m Manifest
	dec := json.NewDecoder(io.LimitReader(tr, 256<<20))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&m); err != nil {
		return nil, nil, fmt.Errorf("reading manifest: %w", err)
	}
	if m.Format != BundleFormat {
		return nil, nil, fmt.Errorf("manifest format %q, want %q", m.Format, BundleFormat)
	}
	want := map[string]ManifestObject{}
	for _, o := range m.Objects {
		if err := checkBundleKey(o.Key); err != nil {
			return nil, nil, err
		}
		if _, dup := want[o.Key]; dup {
			return nil, nil, fmt.Errorf("manifest lists %s twice", o.Key)
		}
		want[o.Key] = o
	}
	staged := map[string]string{}
	for i := 0; ; i++ {
		if err := ctx.Err(); err != nil {
			return nil, nil, err
		}
		hdr, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading archive: %w", err)
		}
		key, ok := strings.CutPrefix(hdr.Name, "objects/")
		o, listed := want[key]
		if !ok || !listed || hdr.Typeflag != tar.TypeReg {
			return nil, nil, fmt.Errorf("archive entry %q is not in the manifest", hdr.Name)
		}
		if _, dup := staged[key]; dup {
			return nil, nil, fmt.Errorf("archive holds %s twice", key)
		}
		p := filepath.Join(dir, fmt.Sprintf("%06d", i))
		if err := stage(tr, p, o); err != nil {
			return nil, nil, err
		}
		staged[key] = p
	}
	for k := range want {
		if _, ok := staged[k]; !ok {
			return nil, nil, fmt.Errorf("%s is in the manifest but not in the archive", k)
		}
	}
	return &m, staged, nil
}

func stage(r io.Reader, p string, o ManifestObject) error {
	f, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(f, h), io.LimitReader(r, o.Size+1))
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("extracting %s: %w", o.Key, err)
	}
	if n != o.Size || hex.EncodeToString(h.Sum(nil)) != o.SHA256 {
		return fmt.Errorf("%s does not match the manifest's size and SHA-256", o.Key)
	}
	return nil
}

// checkBundleKey allows only cache keys: module protocol objects and checksum
// database data. Anything else (published/, paths with ..) is refused.
func checkBundleKey(key string) error {
	if err := storage.CheckKey(key); err != nil {
		return fmt.Errorf("invalid object key %q", key)
	}
	if !strings.HasPrefix(key, "mod/") && !strings.HasPrefix(key, "sumdb/") {
		return fmt.Errorf("object key %q is neither a module object nor checksum database data", key)
	}
	return nil
}

// verify checks the staged objects' contents against the manifest's module hashes
// and the checksum database lookups in the bundle.
func verify(m *Manifest, staged map[string]string) (sumdbChecked int, err error) {
	hashes := map[string]ManifestModule{}
	for _, mm := range m.Modules {
		if err := module.Check(mm.Path, mm.Version); err != nil {
			return 0, fmt.Errorf("manifest: %w", err)
		}
		hashes[mm.Path+"@"+mm.Version] = mm
	}
	for key, p := range staged {
		mv, ext, ok := moduleObject(key)
		if !ok {
			continue
		}
		mm, listed := hashes[mv.String()]
		switch ext {
		case ".zip":
			h, err := dirhash.HashZip(p, dirhash.Hash1)
			if err != nil {
				return 0, fmt.Errorf("%s: %w", key, err)
			}
			if !listed || h != mm.ZipHash {
				return 0, fmt.Errorf("%s: h1 %s does not match the manifest", key, h)
			}
		case ".mod":
			data, err := os.ReadFile(p)
			if err != nil {
				return 0, err
			}
			h, err := GoModHash(data)
			if err != nil {
				return 0, err
			}
			if !listed || h != mm.ModHash {
				return 0, fmt.Errorf("%s: h1 %s does not match the manifest", key, h)
			}
		case ".info":
			data, err := os.ReadFile(p)
			if err != nil {
				return 0, err
			}
			info, err := goproxy.ParseInfo(data)
			if err != nil || info.Version != mv.Version {
				return 0, fmt.Errorf("%s: not a valid .info for %s", key, mv)
			}
		}
	}
	// A lookup record is "path version h1:...\npath version/go.mod h1:...\n"
	// followed by the signed tree head; its hashes must agree with the manifest.
	for key, p := range staged {
		rest, ok := strings.CutPrefix(key, "sumdb/")
		if !ok {
			continue
		}
		_, rest, _ = strings.Cut(rest, "/")
		if !strings.HasPrefix(rest, "lookup/") {
			continue
		}
		data, err := os.ReadFile(p)
		if err != nil {
			return 0, err
		}
		matched := false
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Fields(line)
			if len(f) != 3 || !strings.HasPrefix(f[2], "h1:") {
				continue
			}
			ver, isMod := strings.CutSuffix(f[1], "/go.mod")
			mm, ok := hashes[f[0]+"@"+ver]
			if !ok {
				continue
			}
			want := mm.ZipHash
			if isMod {
				want = mm.ModHash
			}
			if want != "" && want != f[2] {
				return 0, fmt.Errorf("%s@%s: the bundle's checksum database record says %s, the manifest %s", f[0], f[1], f[2], want)
			}
			matched = matched || want != ""
		}
		if matched {
			sumdbChecked++
		}
	}
	return sumdbChecked, nil
}

// install puts one verified object into the store unless the same bytes are
// already there. A version list is merged with the cached one.
func install(ctx context.Context, store storage.Store, o ManifestObject, staged string) (bool, error) {
	if strings.HasSuffix(o.Key, "/@v/list") {
		merged, changed, err := mergeList(ctx, store, o.Key, staged)
		if err != nil || !changed {
			return false, err
		}
		if err := os.WriteFile(staged, merged, 0o644); err != nil {
			return false, err
		}
	} else if same, err := storedSame(ctx, store, o); err != nil || same {
		return false, err
	}
	f, err := os.Open(staged)
	if err != nil {
		return false, err
	}
	defer f.Close()
	return true, store.Put(ctx, o.Key, f)
}

func storedSame(ctx context.Context, store storage.Store, o ManifestObject) (bool, error) {
	obj, err := store.Open(ctx, o.Key)
	if errors.Is(err, derrors.NotFound) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	defer obj.Close()
	if obj.Info().Size != o.Size {
		return false, nil
	}
	h := sha256.New()
	if _, err := io.Copy(h, obj); err != nil {
		return false, err
	}
	return hex.EncodeToString(h.Sum(nil)) == o.SHA256, nil
}

func mergeList(ctx context.Context, store storage.Store, key, staged string) ([]byte, bool, error) {
	incoming, err := os.ReadFile(staged)
	if err != nil {
		return nil, false, err
	}
	var existing []byte
	if obj, err := store.Open(ctx, key); err == nil {
		existing, err = io.ReadAll(obj)
		obj.Close()
		if err != nil {
			return nil, false, err
		}
	} else if !errors.Is(err, derrors.NotFound) {
		return nil, false, err
	}
	set := map[string]bool{}
	for _, v := range strings.Fields(string(existing)) {
		set[v] = true
	}
	before := len(set)
	for _, v := range strings.Fields(string(incoming)) {
		if semver.IsValid(v) {
			set[v] = true
		}
	}
	if existing != nil && len(set) == before {
		return nil, false, nil
	}
	vs := make([]string, 0, len(set))
	for v := range set {
		vs = append(vs, v)
	}
	sort.Slice(vs, func(i, j int) bool { return semver.Compare(vs[i], vs[j]) < 0 })
	var b bytes.Buffer
	for _, v := range vs {
		b.WriteString(v + "\n")
	}
	return b.Bytes(), true, nil
}
