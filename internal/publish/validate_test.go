package publish

import (
	"archive/zip"
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/internal/derrors"
)

// zipEntry is one file of a hand-built zip.
type zipEntry struct {
	name, body string
	mode       fs.FileMode // 0: regular 0644
}

// buildZip writes entries as a zip file in t's temp dir and returns it open.
func buildZip(t testing.TB, entries ...zipEntry) *os.File {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for _, e := range entries {
		h := &zip.FileHeader{Name: e.name, Method: zip.Deflate}
		mode := e.mode
		if mode == 0 {
			mode = 0o644
		}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		w.Write([]byte(e.body))
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return tempFile(t, buf.Bytes())
}

func tempFile(t testing.TB, data []byte) *os.File {
	t.Helper()
	p := filepath.Join(t.TempDir(), "upload.zip")
	if err := os.WriteFile(p, data, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

func checkFile(f *os.File, mod, ver string) (Checked, error) {
	st, err := f.Stat()
	if err != nil {
		return Checked{}, err
	}
	return Check(mod, ver, f, st.Size())
}

func TestCheck(t *testing.T) {
	t.Parallel()
	const mod = "corp.test/lib"
	pfx := mod + "@v1.0.0/"
	goMod := zipEntry{name: pfx + "go.mod", body: "module corp.test/lib\n\ngo 1.22\n"}
	src := zipEntry{name: pfx + "lib.go", body: "package lib\n"}
	tests := []struct {
		name     string
		mod, ver string
		zip      *os.File
		kind     error
		reason   string // substring of the public message
		wantMod  string // for ok cases: the .mod served
	}{
		{name: "ok/with-go-mod", mod: mod, ver: "v1.0.0", zip: buildZip(t, goMod, src), wantMod: goMod.body},
		{name: "ok/without-go-mod-synthesized", mod: mod, ver: "v1.0.0", zip: buildZip(t, src), wantMod: "module corp.test/lib\n"},
		{name: "ok/v2-suffix", mod: mod + "/v2", ver: "v2.1.0", zip: buildZip(t,
			zipEntry{name: mod + "/v2@v2.1.0/go.mod", body: "module corp.test/lib/v2\n"},
			zipEntry{name: mod + "/v2@v2.1.0/a.go", body: "package lib\n"}), wantMod: "module corp.test/lib/v2\n"},
		{name: "ok/incompatible-without-go-mod", mod: mod, ver: "v3.0.0+incompatible", zip: buildZip(t,
			zipEntry{name: mod + "@v3.0.0+incompatible/a.go", body: "package lib\n"}), wantMod: "module corp.test/lib\n"},

		{name: "fail/non-canonical-version", mod: mod, ver: "v1.0", zip: buildZip(t, goMod, src),
			kind: derrors.InvalidArgument, reason: `version "v1.0" is not a canonical semantic version (such as "v1.0.0")`},
		{name: "fail/not-semver", mod: mod, ver: "latest", zip: buildZip(t, goMod, src),
			kind: derrors.InvalidArgument, reason: "is not a canonical semantic version"},
		{name: "fail/invalid-module-path", mod: "corp.test/../x", ver: "v1.0.0", zip: buildZip(t, src),
			kind: derrors.InvalidArgument, reason: "invalid module path"},
		{name: "fail/major-version-without-suffix", mod: mod, ver: "v2.0.0", zip: buildZip(t, src),
			kind: derrors.InvalidArgument, reason: "should be v0 or v1, not v2"},
		{name: "fail/suffix-disagrees-with-version", mod: mod + "/v2", ver: "v1.0.0", zip: buildZip(t, src),
			kind: derrors.InvalidArgument, reason: "should be v2, not v1"},
		{name: "fail/wrong-prefix", mod: mod, ver: "v1.0.0", zip: buildZip(t, zipEntry{name: "corp.test/other@v1.0.0/a.go", body: "package a\n"}),
			kind: derrors.InvalidArgument, reason: `path does not have prefix "corp.test/lib@v1.0.0/"`},
		{name: "fail/version-prefix-mismatch", mod: mod, ver: "v1.0.1", zip: buildZip(t, goMod, src),
			kind: derrors.InvalidArgument, reason: `path does not have prefix "corp.test/lib@v1.0.1/"`},
		{name: "fail/go-mod-declares-other-module", mod: mod, ver: "v1.0.0", zip: buildZip(t, zipEntry{name: pfx + "go.mod", body: "module corp.test/other\n"}, src),
			kind: derrors.InvalidArgument, reason: `go.mod declares module "corp.test/other", not "corp.test/lib"`},
		{name: "fail/go-mod-without-module", mod: mod, ver: "v1.0.0", zip: buildZip(t, zipEntry{name: pfx + "go.mod", body: "go 1.22\n"}, src),
			kind: derrors.InvalidArgument, reason: "go.mod has no module directive"},
		{name: "fail/go-mod-unparsable", mod: mod, ver: "v1.0.0", zip: buildZip(t, zipEntry{name: pfx + "go.mod", body: "module corp.test/lib\nrequire (\n"}, src),
			kind: derrors.InvalidArgument, reason: "go.mod does not parse"},
		{name: "fail/case-collision", mod: mod, ver: "v1.0.0", zip: buildZip(t, goMod, src, zipEntry{name: pfx + "LIB.go", body: "package lib\n"}),
			kind: derrors.InvalidArgument, reason: "case-insensitive file name collision"},
		{name: "fail/duplicate-name", mod: mod, ver: "v1.0.0", zip: buildZip(t, goMod, src, src),
			kind: derrors.InvalidArgument, reason: "multiple entries for file"},
		{name: "fail/symlink", mod: mod, ver: "v1.0.0", zip: buildZip(t, goMod, src, zipEntry{name: pfx + "link.go", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}),
			kind: derrors.InvalidArgument, reason: "link.go is not a regular file"},
		{name: "fail/go-mod-in-subdirectory-case", mod: mod, ver: "v1.0.0", zip: buildZip(t, zipEntry{name: pfx + "GO.MOD", body: "module corp.test/lib\n"}, src),
			kind: derrors.InvalidArgument, reason: "go.mod files must have lowercase names"},
		{name: "fail/unclean-path", mod: mod, ver: "v1.0.0", zip: buildZip(t, goMod, zipEntry{name: pfx + "a/../b.go", body: "package lib\n"}),
			kind: derrors.InvalidArgument, reason: "file path is not clean"},
		{name: "fail/incompatible-with-go-mod", mod: mod, ver: "v3.0.0+incompatible", zip: buildZip(t,
			zipEntry{name: mod + "@v3.0.0+incompatible/go.mod", body: "module corp.test/lib\n"}),
			kind: derrors.InvalidArgument, reason: "+incompatible is only for modules without one"},
		{name: "fail/empty-zip", mod: mod, ver: "v1.0.0", zip: buildZip(t),
			kind: derrors.InvalidArgument, reason: "it contains no files"},
		{name: "fail/not-a-zip", mod: mod, ver: "v1.0.0", zip: tempFile(t, []byte("this is not a zip file at all")),
			kind: derrors.InvalidArgument, reason: "invalid module zip: not a zip file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := checkFile(tt.zip, tt.mod, tt.ver)
			if tt.kind == nil {
				if err != nil {
					t.Fatalf("Check: %v", err)
				}
				if string(c.GoMod) != tt.wantMod {
					t.Errorf("GoMod = %q, want %q", c.GoMod, tt.wantMod)
				}
				want, err := dirhash.HashZip(tt.zip.Name(), dirhash.Hash1)
				if err != nil || c.ZipHash != want {
					t.Errorf("ZipHash = %q, want %q (%v)", c.ZipHash, want, err)
				}
				if len(c.SHA256) != 64 || !strings.HasPrefix(c.ModHash, "h1:") {
					t.Errorf("SHA256 %q, ModHash %q", c.SHA256, c.ModHash)
				}
				return
			}
			if !errors.Is(err, tt.kind) {
				t.Fatalf("Check: err = %v, want kind %v", err, tt.kind)
			}
			if msg := derrors.PublicMessage(err); !strings.Contains(msg, tt.reason) {
				t.Errorf("public message %q, want it to contain %q", msg, tt.reason)
			}
		})
	}
}

// The zip the client builds passes the server's checks and hashes as the go
// command would, and files the go command leaves out stay out.
func TestCreateZipFromDir(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":           "module corp.test/tool\n\ngo 1.22\n",
		"tool.go":          "package tool\n",
		".git/config":      "[core]\n",
		"nested/go.mod":    "module corp.test/tool/nested\n",
		"nested/nested.go": "package nested\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	mod, err := ModulePath(dir)
	if err != nil || mod != "corp.test/tool" {
		t.Fatalf("ModulePath = %q, %v", mod, err)
	}
	f, err := CreateZip(dir, mod, "v0.1.0")
	if err != nil {
		t.Fatal(err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	c, err := checkFile(f, mod, "v0.1.0")
	if err != nil {
		t.Fatalf("the client's zip fails the server's check: %v", err)
	}
	st, _ := f.Stat()
	zr, err := zip.NewReader(f, st.Size())
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, zf := range zr.File {
		names = append(names, zf.Name)
	}
	if got := strings.Join(names, ","); got != "corp.test/tool@v0.1.0/go.mod,corp.test/tool@v0.1.0/tool.go" {
		t.Errorf("zip holds %s", got)
	}
	if _, err := CreateZip(dir, mod, "v1"); err == nil {
		t.Error("CreateZip accepted a non-canonical version")
	}
	_ = c
}
