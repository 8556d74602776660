// Package vulntest builds vulnerability-database fixtures for tests: OSV reports
// for test modules, and the golang.org/x/vulndb-shaped module that carries them.
// It also installs the real govulncheck the end-to-end tests run.
package vulntest

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// GovulncheckVersion is the golang.org/x/vuln release whose govulncheck the
// tests run, installed through the Go module proxy.
const GovulncheckVersion = "v1.9.0"

// Report describes one advisory against one module.
type Report struct {
	ID       string
	Aliases  []string
	Summary  string
	Module   string
	Package  string // the vulnerable package; default Module
	Symbols  []string
	Ranges   [][2]string // {introduced, fixed} without "v"; fixed may be ""
	Modified time.Time
}

// OSV returns the report as an OSV JSON document, as golang.org/x/vulndb writes
// them under data/osv.
func (r Report) OSV() []byte {
	mod := time.Date(2024, 6, 1, 0, 0, 0, 0, time.UTC)
	if !r.Modified.IsZero() {
		mod = r.Modified
	}
	var events []map[string]string
	for _, rg := range r.Ranges {
		events = append(events, map[string]string{"introduced": rg[0]})
		if rg[1] != "" {
			events = append(events, map[string]string{"fixed": rg[1]})
		}
	}
	pkg := r.Package
	if pkg == "" {
		pkg = r.Module
	}
	imp := map[string]any{"path": pkg}
	if len(r.Symbols) > 0 {
		imp["symbols"] = r.Symbols
	}
	doc := map[string]any{
		"schema_version": "1.3.1",
		"id":             r.ID,
		"modified":       mod.Format(time.RFC3339),
		"published":      mod.Format(time.RFC3339),
		"aliases":        r.Aliases,
		"summary":        r.Summary,
		"details":        r.Summary + ".",
		"affected": []any{map[string]any{
			"package":            map[string]string{"name": r.Module, "ecosystem": "Go"},
			"ranges":             []any{map[string]any{"type": "SEMVER", "events": events}},
			"ecosystem_specific": map[string]any{"imports": []any{imp}},
		}},
		"references":        []any{},
		"database_specific": map[string]string{"url": "https://pkg.go.dev/vuln/" + r.ID, "review_status": "REVIEWED"},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err)
	}
	return b
}

// ModuleFiles returns the files of a golang.org/x/vulndb-shaped module carrying
// reports under data/osv, for a proxytest.Module.
func ModuleFiles(modulePath string, reports ...Report) map[string]string {
	files := map[string]string{"go.mod": "module " + modulePath + "\n\ngo 1.22\n", "doc.go": "package vulndb\n"}
	for _, r := range reports {
		files["data/osv/"+r.ID+".json"] = string(r.OSV())
	}
	return files
}

// EnsureGovulncheck installs govulncheck at GovulncheckVersion through the Go
// module proxy once per machine, caching it under the user cache directory, and
// returns its path. MODGATE_GOVULNCHECK overrides it.
func EnsureGovulncheck(ctx context.Context) (string, error) {
	if p := os.Getenv("MODGATE_GOVULNCHECK"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("vulntest: %w", err)
	}
	dir := filepath.Join(cache, "modgate", "bin", "govulncheck-"+GovulncheckVersion)
	bin := filepath.Join(dir, "govulncheck")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("vulntest: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("vulntest: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("vulntest: locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("vulntest: %w", err)
	}
	defer os.RemoveAll(tmp)
	cmd := exec.CommandContext(ctx, "go", "install", "golang.org/x/vuln/cmd/govulncheck@"+GovulncheckVersion)
	cmd.Dir = tmp // outside any module
	env := []string{"GOBIN=" + tmp, "CGO_ENABLED=0", "GOFLAGS="}
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "GOBIN=") && !strings.HasPrefix(kv, "GOFLAGS=") {
			env = append(env, kv)
		}
	}
	cmd.Env = env
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("vulntest: installing govulncheck %s: %v\n%s", GovulncheckVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "govulncheck"), bin); err != nil {
		return "", fmt.Errorf("vulntest: %w", err)
	}
	return bin, nil
}
