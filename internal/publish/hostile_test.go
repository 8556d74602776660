package publish

import (
	"archive/zip"
	"bytes"
	"compress/flate"
	"errors"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/derrors"
)

// rawZip writes one entry with the given declared uncompressed size and raw
// (already deflated) data: what an attacker crafts by hand.
func rawZip(t *testing.T, name string, declared uint64, deflated []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, err := zw.CreateRaw(&zip.FileHeader{Name: name, Method: zip.Deflate, UncompressedSize64: declared, CompressedSize64: uint64(len(deflated))})
	if err != nil {
		t.Fatal(err)
	}
	w.Write(deflated)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

func deflateZeros(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	fw, _ := flate.NewWriter(&buf, flate.BestCompression)
	zeros := make([]byte, 1<<20)
	for n > 0 {
		k := min(n, len(zeros))
		fw.Write(zeros[:k])
		n -= k
	}
	fw.Close()
	return buf.Bytes()
}

// Zips built to hurt the server that validates them: bombs that expand far
// beyond their size (declared honestly, or lying about it), absolute and
// traversing names. Each is refused with a one-line reason, quickly and
// without expanding the payload.
func TestCheckHostileZips(t *testing.T) {
	t.Parallel()
	const mod, ver = "corp.test/lib", "v1.0.0"
	pfx := mod + "@" + ver + "/"
	// The declared-size bomb is refused on its header alone; the lying one
	// expands past its declared 10 bytes. A few MiB of zeros show both without
	// making the test itself slow.
	bomb := deflateZeros(t, 4<<20)
	tests := []struct {
		name     string
		data     []byte
		wantKind error
		want     string
	}{
		{name: "fail/bomb-declared", data: rawZip(t, pfx+"zeros.bin", 600<<20, bomb), wantKind: derrors.TooLarge, want: "invalid module zip"},
		{name: "fail/bomb-lying-about-size", data: rawZip(t, pfx+"zeros.bin", 10, bomb), wantKind: derrors.InvalidArgument, want: "invalid module zip"},
		{name: "fail/absolute-name", data: zipBytes(t, zipEntry{name: "/" + pfx + "a.go", body: "package a\n"}), wantKind: derrors.InvalidArgument, want: "invalid module zip"},
		{name: "fail/traversal-name", data: zipBytes(t, zipEntry{name: pfx + "../../../etc/cron.d/x", body: "x"}), wantKind: derrors.InvalidArgument, want: "invalid module zip"},
		{name: "fail/windows-separator", data: zipBytes(t, zipEntry{name: pfx + "a\\..\\..\\b.go", body: "x"}), wantKind: derrors.InvalidArgument, want: "invalid module zip"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := Check(mod, ver, tempFile(t, tt.data), int64(len(tt.data)))
			if err == nil || !errors.Is(err, tt.wantKind) {
				t.Fatalf("Check = %v, want a %v error", err, tt.wantKind)
			}
			msg := derrors.PublicMessage(err)
			if !strings.Contains(msg, tt.want) || strings.Contains(msg, "\n") {
				t.Errorf("reason %q, want one line containing %q", msg, tt.want)
			}
		})
	}
}
