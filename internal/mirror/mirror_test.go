package mirror

import (
	"archive/tar"
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
	"reflect"
	"strings"
	"testing"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

func TestParseGoSum(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		in      string
		want    []Target
		wantErr string
	}{
		{name: "ok/content-and-gomod", in: "a.test/x v1.0.0 h1:zip=\na.test/x v1.0.0/go.mod h1:mod=\nb.test/y v0.1.0/go.mod h1:ymod=\n",
			want: []Target{{Path: "a.test/x", Version: "v1.0.0", ZipSum: "h1:zip=", ModSum: "h1:mod="}, {Path: "b.test/y", Version: "v0.1.0", ModOnly: true, ModSum: "h1:ymod="}}},
		{name: "ok/empty", in: "\n", want: []Target{}},
		{name: "fail/two-fields", in: "a.test/x v1.0.0\n", wantErr: "line 1"},
		{name: "fail/bad-version", in: "a.test/x 1.0 h1:x=\n", wantErr: "line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseGoSum([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || !reflect.DeepEqual(got, tt.want) {
				t.Fatalf("got %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
}

func TestLatestVersions(t *testing.T) {
	t.Parallel()
	list := []byte("v1.0.0\nv1.10.0\nv1.2.0\nv2.0.0-rc.1\nbogus\n")
	if got := LatestVersions(list, 2); !reflect.DeepEqual(got, []string{"v1.10.0", "v1.2.0"}) {
		t.Errorf("got %v", got)
	}
	if got := LatestVersions([]byte("v0.1.0-pre\n"), 3); !reflect.DeepEqual(got, []string{"v0.1.0-pre"}) {
		t.Errorf("pre-release only: got %v", got)
	}
}

// cacheWith writes the modules' .info, .mod and .zip into a fresh cache directory
// under the keys modgate's cache uses.
func cacheWith(t *testing.T, mods ...proxytest.Module) string {
	t.Helper()
	dir := t.TempDir()
	for _, m := range mods {
		esc, _ := module.EscapePath(m.Path)
		zip, err := proxytest.Zip(m)
		if err != nil {
			t.Fatal(err)
		}
		info := fmt.Sprintf(`{"Version":%q,"Time":%q}`, m.Version, m.InfoTime().Format("2006-01-02T15:04:05Z"))
		for ext, data := range map[string][]byte{".zip": zip, ".mod": m.GoMod(), ".info": []byte(info)} {
			p := filepath.Join(dir, "mod", esc, "@v", m.Version+ext)
			os.MkdirAll(filepath.Dir(p), 0o755)
			if err := os.WriteFile(p, data, 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	return dir
}

func readBundle(t *testing.T, path string) (Manifest, map[string][]byte) {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	gz, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(gz)
	var m Manifest
	objs := map[string][]byte{}
	for {
		hdr, err := tr.Next()
		if err == io.EOF {
			return m, objs
		}
		if err != nil {
			t.Fatal(err)
		}
		data, _ := io.ReadAll(tr)
		if hdr.Name == manifestName {
			json.Unmarshal(data, &m)
		} else {
			objs[strings.TrimPrefix(hdr.Name, "objects/")] = data
		}
	}
}

func writeBundle(t *testing.T, m Manifest, objs map[string][]byte) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "b.tar.gz")
	f, _ := os.Create(path)
	gz := gzip.NewWriter(f)
	tw := tar.NewWriter(gz)
	data, _ := json.Marshal(m)
	tw.WriteHeader(&tar.Header{Name: manifestName, Mode: 0o644, Size: int64(len(data))})
	tw.Write(data)
	for k, b := range objs {
		tw.WriteHeader(&tar.Header{Name: "objects/" + k, Mode: 0o644, Size: int64(len(b))})
		tw.Write(b)
	}
	tw.Close()
	gz.Close()
	f.Close()
	return path
}

func sha(b []byte) string { s := sha256.Sum256(b); return hex.EncodeToString(s[:]) }

// setObject replaces an object's bytes and, with fixManifest, its manifest entry,
// so only the deeper checks can catch the change.
func setObject(m *Manifest, objs map[string][]byte, key string, data []byte, fixManifest bool) {
	objs[key] = data
	for i := range m.Objects {
		if m.Objects[i].Key == key {
			if fixManifest {
				m.Objects[i].Size, m.Objects[i].SHA256 = int64(len(data)), sha(data)
			}
			return
		}
	}
	m.Objects = append(m.Objects, ManifestObject{Key: key, Size: int64(len(data)), SHA256: sha(data)})
}

// Import installs a good bundle, idempotently, and rejects a bad one whole —
// whichever check catches it — leaving the cache untouched.
func TestBundleImportVerifiesEverything(t *testing.T) {
	t.Parallel()
	var mods []proxytest.Module
	for _, m := range proxytest.StandardModules() {
		if m.Path == proxytest.HelloPath || m.Path == proxytest.UpperPath {
			mods = append(mods, m)
		}
	}
	src := cacheWith(t, mods...)
	good := filepath.Join(t.TempDir(), "good.tar.gz")
	exp, err := Export(context.Background(), src, good, ExportOptions{Modules: []string{proxytest.HelloPath + "@v1.1.0", proxytest.UpperPath}})
	if err != nil {
		t.Fatal(err)
	}
	if exp.Modules != 2 || exp.Objects != 6 {
		t.Fatalf("export of one hello version and Upper/Case: %+v, want 2 modules, 6 objects", exp)
	}
	zipKey := "mod/mod.test/hello/@v/v1.1.0.zip"
	modKey := "mod/mod.test/hello/@v/v1.1.0.mod"
	lookupKey := "sumdb/sum.test/lookup/mod.test/hello@v1.1.0"

	tests := []struct {
		name   string
		tamper func(m *Manifest, objs map[string][]byte)
		want   string
	}{
		{"fail/zip-byte-altered", func(m *Manifest, objs map[string][]byte) {
			b := append([]byte(nil), objs[zipKey]...)
			b[len(b)/2] ^= 1
			objs[zipKey] = b
		}, "does not match the manifest's size and SHA-256"},
		{"fail/zip-altered-manifest-sha-updated", func(m *Manifest, objs map[string][]byte) {
			other, _ := os.ReadFile(filepath.Join(src, "mod/mod.test/hello/@v/v1.0.0.zip"))
			setObject(m, objs, zipKey, other, true)
		}, "h1"},
		{"fail/gomod-altered-manifest-sha-updated", func(m *Manifest, objs map[string][]byte) {
			setObject(m, objs, modKey, append(objs[modKey], "// x\n"...), true)
		}, "h1"},
		{"fail/object-not-in-manifest", func(m *Manifest, objs map[string][]byte) {
			objs["mod/mod.test/evil/@v/v1.0.0.mod"] = []byte("module mod.test/evil\n")
		}, "not in the manifest"},
		{"fail/object-missing", func(m *Manifest, objs map[string][]byte) { delete(objs, modKey) }, "not in the archive"},
		{"fail/key-escapes-cache", func(m *Manifest, objs map[string][]byte) {
			setObject(m, objs, "mod/../../etc/passwd", []byte("x"), true)
		}, "invalid object key"},
		{"fail/published-key", func(m *Manifest, objs map[string][]byte) {
			setObject(m, objs, "published/corp.test/x/@v/v1.0.0/abc.zip", []byte("x"), true)
		}, "neither a module object"},
		{"fail/checksum-database-disagrees", func(m *Manifest, objs map[string][]byte) {
			rec := "1\nmod.test/hello v1.1.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nmod.test/hello v1.1.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\n"
			setObject(m, objs, lookupKey, []byte(rec), true)
		}, "checksum database record"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, objs := readBundle(t, good)
			tt.tamper(&m, objs)
			bad := writeBundle(t, m, objs)
			dir := t.TempDir()
			store, err := storage.NewDisk(dir)
			if err != nil {
				t.Fatal(err)
			}
			_, err = Import(context.Background(), store, bad)
			if !errors.Is(err, ErrBundleRejected) || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want rejection mentioning %q", err, tt.want)
			}
			filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if d != nil && d.IsDir() && d.Name() == ".tmp" {
					return fs.SkipDir
				}
				if d != nil && !d.IsDir() {
					t.Errorf("rejected bundle installed %s", p)
				}
				return nil
			})
		})
	}

	t.Run("ok/matching-checksum-database-record-and-idempotent", func(t *testing.T) {
		t.Parallel()
		m, objs := readBundle(t, good)
		var rec string
		for _, mm := range m.Modules {
			if mm.Path == proxytest.HelloPath {
				rec = fmt.Sprintf("7\n%s %s %s\n%s %s/go.mod %s\n\n", mm.Path, mm.Version, mm.ZipHash, mm.Path, mm.Version, mm.ModHash)
			}
		}
		setObject(&m, objs, lookupKey, []byte(rec), true)
		setObject(&m, objs, "mod/mod.test/hello/@v/list", []byte("v1.1.0\n"), true)
		b := writeBundle(t, m, objs)
		dir := t.TempDir()
		store, _ := storage.NewDisk(dir)
		os.MkdirAll(filepath.Join(dir, "mod/mod.test/hello/@v"), 0o755)
		os.WriteFile(filepath.Join(dir, "mod/mod.test/hello/@v/list"), []byte("v1.0.0\n"), 0o644)
		sum, err := Import(context.Background(), store, b)
		if err != nil || sum.SumDBChecked != 1 || sum.Installed != len(m.Objects) {
			t.Fatalf("import: %+v, %v", sum, err)
		}
		list, _ := os.ReadFile(filepath.Join(dir, "mod/mod.test/hello/@v/list"))
		if string(list) != "v1.0.0\nv1.1.0\n" {
			t.Errorf("merged list = %q", list)
		}
		again, err := Import(context.Background(), store, b)
		if err != nil || again.Installed != 0 {
			t.Errorf("second import: %+v, %v; want nothing installed", again, err)
		}
	})
}
