package e2e

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/vulntest"
)

// realVulnDB is the golang.org/x/vulndb version the long test reads: 4,789
// reports in a 25 MB zip.
const realVulnDB = "v0.0.0-20261105234957-e22db6528018"

// The real Go vulnerability database, end to end: the golang.org/x/vulndb
// module (fetched once through the Go module proxy by the harness and kept in
// the module cache) is modgate's upstream; modgate builds /vulndb/ from it, and
// govulncheck finds GO-2021-0113 in a program using golang.org/x/text v0.3.5.
//
// It takes about 45 s on a loaded 2-core machine (the first run also downloads
// 25 MB); -short or MODGATE_TEST_REAL_VULNDB=0 skips it.
func TestRealVulnerabilityDatabase(t *testing.T) {
	if testing.Short() || os.Getenv("MODGATE_TEST_REAL_VULNDB") == "0" {
		t.Skip("skipped: -short or MODGATE_TEST_REAL_VULNDB=0 (the real golang.org/x/vulndb module, 25 MB)")
	}
	govulncheck, err := vulntest.EnsureGovulncheck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// The module cache's download directory is a GOPROXY tree. The go get
	// puts the .mod files of x/text's module graph there too.
	tmp := t.TempDir()
	writeFile(t, filepath.Join(tmp, "go.mod"), []byte("module example.com/fetch\n\ngo 1.21\n"))
	get := exec.Command("go", "get", "golang.org/x/text@v0.3.5")
	get.Dir = tmp
	get.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	if out, err := get.CombinedOutput(); err != nil {
		t.Fatalf("go get golang.org/x/text@v0.3.5: %v\n%s", err, out)
	}
	cmd := exec.Command("go", "mod", "download", "-json", "golang.org/x/vulndb@"+realVulnDB)
	cmd.Dir = tmp
	cmd.Env = append(os.Environ(), "GOFLAGS=-mod=mod")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go mod download: %v\n%s", err, out)
	}
	var dl struct{ Zip string }
	if err := json.NewDecoder(strings.NewReader(string(out))).Decode(&dl); err != nil || dl.Zip == "" {
		t.Fatalf("go mod download -json: %v\n%s", err, out)
	}
	downloadDir := strings.TrimSuffix(dl.Zip, "/golang.org/x/vulndb/@v/"+realVulnDB+".zip")
	upstream := httptest.NewServer(http.FileServer(http.Dir(downloadDir)))
	defer upstream.Close()

	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.VulnDB.Enabled = true
	cfg.VulnDB.Version = realVulnDB // the download cache has no @latest
	cfg.Auth.Anonymous = true       // loopback only; the shipped policy lets anonymous callers read public data
	url := startApp(t, cfg)

	start := time.Now()
	for {
		status, body := getWithToken(t, p.CAFile, url+"/vulndb/ID/GO-2021-0113.json", "")
		if status == 200 {
			if !strings.Contains(body, "golang.org/x/text") {
				t.Fatalf("GO-2021-0113: %s", body)
			}
			break
		}
		if status != 503 && status != 404 || time.Since(start) > 5*time.Minute {
			t.Fatalf("real vulndb not loaded: %d %s", status, body)
		}
		time.Sleep(500 * time.Millisecond)
	}
	t.Logf("real vulndb loaded through modgate in %v", time.Since(start).Round(time.Millisecond))

	g := gotest.New(t, "GOPROXY="+url, "GOSUMDB=off", "GOFLAGS=-mod=mod", "SSL_CERT_FILE="+p.CAFile)
	dir := g.MainModule("example.com/real")
	writeFile(t, filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"golang.org/x/text/language\"\n\nfunc main() { _, _ = language.Parse(\"en\") }\n"))
	if _, stderr, err := g.Run(dir, "get", "golang.org/x/text@v0.3.5"); err != nil {
		t.Fatalf("go get: %v\n%s", err, stderr)
	}
	vc := exec.Command(govulncheck, "-db", url+"/vulndb", "./...")
	vc.Dir = dir
	vc.Env = g.Env()
	res, err := vc.CombinedOutput()
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 || !strings.Contains(string(res), "GO-2021-0113") {
		t.Fatalf("govulncheck: %v (want exit 3 naming GO-2021-0113)\n%s", err, res)
	}
}
