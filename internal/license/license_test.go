package license

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"slices"
	"sync/atomic"
	"testing"

	"github.com/modgate/modgate/internal/derrors"
)

// licenseText returns a license's canonical text (testdata, from licensecheck's
// own test corpus).
func licenseText(t *testing.T, id string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", id+".txt"))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func zipOf(t *testing.T, files map[string]string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range files {
		w, err := zw.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func TestDetect(t *testing.T) {
	mit, agpl := licenseText(t, "MIT"), licenseText(t, "AGPL-3.0")
	tests := []struct {
		name  string
		files map[string]string
		want  []string
	}{
		{"ok/root-mit", map[string]string{"m.test/a@v1.0.0/LICENSE": mit, "m.test/a@v1.0.0/a.go": "package a\n"}, []string{"MIT"}},
		{"ok/agpl-in-subdir-and-mit", map[string]string{"m.test/a@v1.0.0/LICENSE.md": mit, "m.test/a@v1.0.0/sub/COPYING": agpl}, []string{"AGPL-3.0", "MIT"}},
		{"ok/not-a-license-file-name", map[string]string{"m.test/a@v1.0.0/README": agpl}, []string{}},
		{"ok/mostly-not-a-license", map[string]string{"m.test/a@v1.0.0/LICENSE": "All rights reserved. Ask us before using any of this code for anything at all, " + string(bytes.Repeat([]byte("please "), 400))}, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			z := zipOf(t, tt.files)
			got, err := Detect(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Detect = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestDetectorComputesOncePerVersion(t *testing.T) {
	z := zipOf(t, map[string]string{"m.test/a@v1.0.0/LICENSE": licenseText(t, "Apache-2.0")})
	var opens atomic.Int32
	d := NewDetector(func(_ context.Context, mod, ver string) (io.ReaderAt, int64, func(), error) {
		opens.Add(1)
		if ver == "v9.9.9" {
			return nil, 0, nil, derrors.New(derrors.NotFound, "no such version")
		}
		if ver == "v6.6.6" {
			return nil, 0, nil, errors.New("disk on fire")
		}
		return bytes.NewReader(z), int64(len(z)), func() {}, nil
	}, 10)
	for range 3 {
		got, err := d.Licenses(context.Background(), "m.test/a", "v1.0.0")
		if err != nil || !slices.Equal(got, []string{"Apache-2.0"}) {
			t.Fatalf("Licenses = %v, %v", got, err)
		}
	}
	if n := opens.Load(); n != 1 {
		t.Errorf("zip opened %d times, want once", n)
	}
	if got, err := d.Licenses(context.Background(), "m.test/a", "v9.9.9"); err != nil || len(got) != 0 {
		t.Errorf("unknown version: %v, %v; want none, nil", got, err)
	}
	if _, err := d.Licenses(context.Background(), "m.test/a", "v6.6.6"); err == nil {
		t.Error("a failing zip read decided nothing: want an error")
	}
}
