package publish

import (
	"archive/zip"
	"bytes"
	"io/fs"
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	modzip "golang.org/x/mod/zip"
)

func zipBytes(t testing.TB, entries ...zipEntry) []byte {
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
	return buf.Bytes()
}

// FuzzCheck feeds arbitrary bytes to the publish API's zip validation: it must
// never panic, and whatever it accepts must be a zip the go command would accept
// for exactly that module (x/mod's rules, only regular files, a go.mod naming the
// module), with hashes filled in.
func FuzzCheck(f *testing.F) {
	const mod, ver = "corp.test/fuzz", "v1.0.0"
	p := mod + "@" + ver + "/"
	f.Add(zipBytes(f, zipEntry{name: p + "go.mod", body: "module corp.test/fuzz\n"}, zipEntry{name: p + "a.go", body: "package a\n"}))
	f.Add(zipBytes(f, zipEntry{name: p + "go.mod", body: "module corp.test/other\n"}))
	f.Add(zipBytes(f, zipEntry{name: p + "link", body: "/etc/passwd", mode: fs.ModeSymlink | 0o777}))
	f.Add(zipBytes(f, zipEntry{name: "/etc/cron.d/x", body: "x"}))
	f.Add(zipBytes(f, zipEntry{name: p + "a.go", body: "1"}, zipEntry{name: p + "a.go", body: "2"}))
	f.Add(zipBytes(f, zipEntry{name: p + "../../escape.go", body: "x"}))
	f.Add(zipBytes(f, zipEntry{name: p + "A.go", body: "x"}, zipEntry{name: p + "a.go", body: "y"}))
	f.Add([]byte("PK\x05\x06" + strings.Repeat("\x00", 18)))
	f.Fuzz(func(t *testing.T, data []byte) {
		file := tempFile(t, data)
		c, err := Check(mod, ver, file, int64(len(data)))
		if err != nil {
			if msg := err.Error(); strings.Contains(msg, "\n") && !strings.Contains(msg, ": ") {
				t.Fatalf("multi-line error: %q", msg)
			}
			return
		}
		cf, err := modzip.CheckZip(module.Version{Path: mod, Version: ver}, file.Name())
		if err != nil || cf.Err() != nil {
			t.Fatalf("accepted a zip x/mod rejects: %v %v", err, cf.Err())
		}
		zr, err := zip.NewReader(bytes.NewReader(data), int64(len(data)))
		if err != nil {
			t.Fatalf("accepted a non-zip: %v", err)
		}
		for _, zf := range zr.File {
			if !strings.HasSuffix(zf.Name, "/") && !zf.Mode().IsRegular() {
				t.Fatalf("accepted irregular file %q (%v)", zf.Name, zf.Mode())
			}
		}
		if got := modfile.ModulePath(c.GoMod); got != mod {
			t.Fatalf("accepted go.mod for %q", got)
		}
		if !strings.HasPrefix(c.ZipHash, "h1:") || !strings.HasPrefix(c.ModHash, "h1:") || len(c.SHA256) != 64 {
			t.Fatalf("accepted without hashes: %+v", c)
		}
	})
}
