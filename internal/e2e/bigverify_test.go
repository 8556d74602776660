package e2e

import (
	"crypto/rand"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// A verified zip larger than the 16 MiB hold-until-checked limit streams to the
// client. When its bytes fail verification the last of them are withheld and the
// transfer is broken: the go command reports an error and keeps nothing, modgate
// stores nothing under the final key, and once the mirror serves the right bytes
// again the next request gets them.
func TestVerifyLargeZipMismatchMidStream(t *testing.T) {
	t.Parallel()
	blob := make([]byte, 17<<20) // incompressible, so the zip is over 16 MiB too
	if _, err := rand.Read(blob); err != nil {
		t.Fatal(err)
	}
	big := proxytest.Module{
		Path:    "mod.test/big",
		Version: "v1.0.0",
		Files: map[string]string{
			"go.mod":   "module mod.test/big\n\ngo 1.21\n",
			"big.go":   "package big\n",
			"blob.bin": string(blob),
		},
	}
	zipBytes, err := proxytest.Zip(big)
	if err != nil {
		t.Fatal(err)
	}
	if len(zipBytes) <= 16<<20 {
		t.Fatalf("fixture zip is %d bytes, want more than 16 MiB", len(zipBytes))
	}
	upstream := proxytest.NewServer(t, big)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	zipPath := proxytest.ZipPath(big.Path, big.Version)
	// One flipped byte early in the body: nothing can tell until the end.
	upstream.SetFault(zipPath, proxytest.Fault{Corrupt: true, CorruptOffset: 1 << 20})

	mg := startVerifyingProxy(t, upstream.URL, db.Key(), t.TempDir())

	// A plain client: the response started (200, streaming) but does not end
	// with the full zip.
	resp, err := http.Get(mg.URL + zipPath)
	if err != nil {
		t.Fatal(err)
	}
	var got []byte
	buf := make([]byte, 1<<20)
	var readErr error
	for {
		n, err := resp.Body.Read(buf)
		got = append(got, buf[:n]...)
		if err != nil {
			if err.Error() != "EOF" {
				readErr = err
			}
			break
		}
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK && readErr == nil {
		t.Fatalf("corrupt zip delivered as a complete 200 (%d bytes)", len(got))
	}
	if len(got) >= len(zipBytes) {
		t.Errorf("client received %d bytes, the whole zip is %d: the last bytes must be withheld", len(got), len(zipBytes))
	}
	if cachedObject(mg.CacheDir, zipPath) {
		t.Errorf("refused zip was cached under its final key")
	}
	if got := mg.integrityFailures(t); got != 1 {
		t.Errorf("modgate_integrity_failures_total = %v, want 1", got)
	}

	// The go command: an error, and nothing of the module in its cache.
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	_, stderr, err := g.Run("", "mod", "download", big.Path+"@"+big.Version)
	if err == nil {
		t.Fatalf("go mod download of the corrupt zip succeeded:\n%s", stderr)
	}
	if strings.Contains(stderr, "SECURITY ERROR") {
		t.Errorf("the go command received a complete corrupt zip and verified it itself:\n%s", stderr)
	}
	if files := modCacheFiles(t, g.ModCache, "mod.test/big@"); len(files) != 0 {
		t.Errorf("go command's module cache holds the module after a failed download: %v", files)
	}
	if cachedObject(mg.CacheDir, zipPath) {
		t.Errorf("refused zip was cached under its final key")
	}
	leftovers(t, mg.CacheDir, zipPath)

	// Repaired upstream: the right bytes, verified and cached.
	upstream.ClearFaults()
	g2 := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	if _, stderr, err := g2.Run("", "mod", "download", big.Path+"@"+big.Version); err != nil {
		t.Fatalf("go mod download after repair: %v\n%s", err, stderr)
	}
	data, err := os.ReadFile(filepath.Join(mg.CacheDir, "mod", filepath.FromSlash(strings.TrimPrefix(zipPath, "/"))))
	if err != nil {
		t.Fatalf("repaired zip not cached: %v", err)
	}
	if string(data) != string(zipBytes) {
		t.Errorf("cached zip differs from the genuine one")
	}
}

// modCacheFiles lists files of the go command's module cache whose path
// contains sub (extracted sources) and the module's downloaded zips.
func modCacheFiles(t *testing.T, dir, sub string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		if strings.HasPrefix(rel, "cache/download/sumdb/") {
			return nil // the checksum database's answers, not the module
		}
		if strings.Contains(rel, sub) || (strings.Contains(rel, "cache/download/mod.test/big/@v/") &&
			(strings.HasSuffix(rel, ".zip") || strings.HasSuffix(rel, ".ziphash"))) {
			out = append(out, rel)
		}
		return nil
	})
	return out
}

// leftovers fails if modgate's cache holds any file for the object other than
// the final key itself (a scratch or partial file left behind).
func leftovers(t *testing.T, cacheDir, objPath string) {
	t.Helper()
	base := filepath.Base(objPath)
	filepath.WalkDir(cacheDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if strings.Contains(filepath.Base(path), base) || strings.Contains(filepath.Base(path), ".tmp") {
			t.Errorf("leftover file in modgate's cache: %s", path)
		}
		return nil
	})
}
