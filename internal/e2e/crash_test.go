package e2e

import (
	"archive/zip"
	"bytes"
	"crypto/rand"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// A modgate killed with SIGKILL while a zip is streaming in must, after restart,
// never serve the partial object: with the upstream down the request fails, and with
// it back the complete zip is fetched afresh.
func TestKilledDuringTransferServesNoPartialObject(t *testing.T) {
	zipData := randomZip(t, 2<<20)
	var up atomic.Bool // upstream serving normally
	var stalls atomic.Int32
	stalled := make(chan struct{}, 1)
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/@v/v1.0.0.zip") {
			http.NotFound(w, r)
			return
		}
		if !up.Load() {
			if stalls.Add(1) == 1 {
				// The first transfer sends half the zip and then stalls forever.
				w.Header().Set("Content-Length", strconv.Itoa(len(zipData)))
				w.Write(zipData[:len(zipData)/2])
				w.(http.Flusher).Flush()
				stalled <- struct{}{}
				<-r.Context().Done()
				return
			}
			http.Error(w, "upstream down", http.StatusServiceUnavailable)
			return
		}
		w.Write(zipData)
	}))
	defer upstream.Close()

	cacheDir := t.TempDir()
	// This upstream mounts no checksum database.
	cfgFile := filepath.Join(t.TempDir(), "modgate.yaml")
	writeFile(t, cfgFile, []byte("sumdb:\n  no_verify: [example.com]\n"))
	p := startModgate(t, "--config", cfgFile, "--cache-dir", cacheDir, "--upstream", upstream.URL, "--anonymous")
	url := "/example.com/m/@v/v1.0.0.zip"
	go func() {
		resp, err := http.Get(p.URL + url)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
	}()
	select {
	case <-stalled:
	case <-time.After(30 * time.Second):
		t.Fatal("transfer never started")
	}
	time.Sleep(100 * time.Millisecond) // let modgate write what it received
	p.Kill()
	assertNoFinalObject(t, cacheDir)

	p = startModgate(t, "--config", cfgFile, "--cache-dir", cacheDir, "--upstream", upstream.URL, "--anonymous")
	resp, err := http.Get(p.URL + url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("after restart with upstream down: served %d bytes with 200", len(body))
	}
	if resp.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d (%q), want 502", resp.StatusCode, body)
	}

	up.Store(true)
	resp, err = http.Get(p.URL + url)
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Equal(body, zipData) {
		t.Fatalf("with upstream back: status %d, %d bytes (want %d identical)", resp.StatusCode, len(body), len(zipData))
	}
}

func assertNoFinalObject(t *testing.T, dir string) {
	t.Helper()
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel, _ := filepath.Rel(dir, p)
		if !strings.HasPrefix(rel, ".tmp"+string(filepath.Separator)) {
			t.Errorf("object left under its final name after a kill: %s", rel)
		}
		return nil
	})
}

// randomZip returns a valid module zip with about n bytes of incompressible content.
func randomZip(t *testing.T, n int) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.CreateHeader(&zip.FileHeader{Name: "example.com/m@v1.0.0/data.bin", Method: zip.Store})
	data := make([]byte, n)
	rand.Read(data)
	w.Write(data)
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}
