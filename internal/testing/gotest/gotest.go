// Package gotest is a test helper that runs the real go command in a hermetic
// environment: nothing of the developer's or CI's go configuration (GOPROXY,
// GOFLAGS, GOPRIVATE, ~/.netrc, go env -w settings, module cache) reaches it.
//
// The environment a Go starts from (before Set):
//
//	PATH        the test process's PATH (go test puts its own GOROOT/bin first)
//	HOME        a fresh temp dir (so ~/.netrc and ~/.config/go/env are the test's;
//	            go telemetry is set to off there)
//	XDG_CONFIG_HOME, XDG_CACHE_HOME  under HOME
//	GOPATH      a fresh temp dir
//	GOMODCACHE  a fresh temp dir (per Go, shared by its runs)
//	GOCACHE     the test process's build cache (see below)
//	GOENV=off  GOTOOLCHAIN=local  GOFLAGS=-modcacherw  GO111MODULE=on
//	GOPROXY=off  GOSUMDB=off      (tests set them to the server under test)
//	GOPRIVATE= GONOPROXY= GONOSUMDB= GOINSECURE= GOAUTH=netrc GOVCS=
//	CGO_ENABLED=0 GIT_TERMINAL_PROMPT=0 TMPDIR=os.TempDir()
//
// GOCACHE is shared with the test process on purpose: it holds build results
// only (no module downloads, no proxy answers), it is safe for concurrent use,
// and a fresh one would make every `go build` recompile the standard library.
package gotest

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A Go runs the go command for one test, in one hermetic environment.
type Go struct {
	t        testing.TB
	bin      string
	Home     string // HOME: write .netrc here
	ModCache string // GOMODCACHE
	env      []string
}

// New returns a Go with a fresh hermetic environment (see the package comment),
// then applies vars ("KEY=value", later wins).
func New(t testing.TB, vars ...string) *Go {
	t.Helper()
	bin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("gotest: go command not found in PATH: %v", err)
	}
	home := t.TempDir()
	g := &Go{t: t, bin: bin, Home: home, ModCache: t.TempDir()}
	// The module cache is read-only unless GOFLAGS keeps -modcacherw; make it
	// writable so t.TempDir can remove it whatever a test set GOFLAGS to.
	// Registered after TempDir, this cleanup runs before the removal.
	t.Cleanup(func() { makeWritable(g.ModCache) })
	// Telemetry off, as `go telemetry off` would write it: otherwise the go
	// command may leave a child process writing telemetry files under HOME
	// while t.TempDir removes it.
	modeDir := filepath.Join(home, ".config", "go", "telemetry")
	if err := os.MkdirAll(modeDir, 0o755); err != nil {
		t.Fatalf("gotest: %v", err)
	}
	if err := os.WriteFile(filepath.Join(modeDir, "mode"), []byte("off"), 0o644); err != nil {
		t.Fatalf("gotest: %v", err)
	}
	g.env = []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_CONFIG_HOME=" + filepath.Join(home, ".config"),
		"XDG_CACHE_HOME=" + filepath.Join(home, ".cache"),
		"TMPDIR=" + os.TempDir(),
		"GOPATH=" + t.TempDir(),
		"GOMODCACHE=" + g.ModCache,
		"GOCACHE=" + buildCache(t),
		"GOENV=off",
		"GOTOOLCHAIN=local",
		"GOFLAGS=-modcacherw",
		"GO111MODULE=on",
		"GOPROXY=off",
		"GOSUMDB=off",
		"GOPRIVATE=",
		"GONOPROXY=",
		"GONOSUMDB=",
		"GOINSECURE=",
		"GOAUTH=netrc",
		"GOVCS=",
		"CGO_ENABLED=0",
		"GIT_TERMINAL_PROMPT=0",
	}
	for _, kv := range vars {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			t.Fatalf("gotest: environment entry %q is not KEY=value", kv)
		}
		g.Set(k, v)
	}
	return g
}

func makeWritable(dir string) {
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(path, 0o755)
		}
		return nil
	})
}

// buildCache returns the test process's build cache directory, as the go
// command would pick it.
func buildCache(t testing.TB) string {
	if c := os.Getenv("GOCACHE"); c != "" && c != "off" {
		return c
	}
	dir, err := os.UserCacheDir()
	if err != nil {
		return t.TempDir()
	}
	return filepath.Join(dir, "go-build")
}

// Set sets one environment variable for later runs.
func (g *Go) Set(key, value string) {
	g.env = slices.DeleteFunc(g.env, func(kv string) bool { return strings.HasPrefix(kv, key+"=") })
	g.env = append(g.env, key+"="+value)
}

// Env returns the environment runs use, "KEY=value" entries.
func (g *Go) Env() []string { return slices.Clone(g.env) }

// Run runs `go args...` in dir (a temp dir if empty) and returns its output.
// err is non-nil when the command fails; the output is logged either way so a
// failing test shows what the go command said.
func (g *Go) Run(dir string, args ...string) (stdout, stderr string, err error) {
	g.t.Helper()
	if dir == "" {
		dir = g.t.TempDir()
	}
	cmd := exec.CommandContext(g.t.Context(), g.bin, args...)
	cmd.Dir = dir
	cmd.Env = g.env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err = cmd.Run()
	g.t.Logf("go %s (in %s): err=%v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), dir, err, out.String(), errOut.String())
	return out.String(), errOut.String(), err
}

// MainModule writes a main module "module <path>" (go 1.21) in a fresh temp dir
// and returns the dir, for `go get` and `go build` runs.
func (g *Go) MainModule(path string) string {
	g.t.Helper()
	dir := g.t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module "+path+"\n\ngo 1.21\n"), 0o644); err != nil {
		g.t.Fatalf("gotest: %v", err)
	}
	return dir
}

// Run runs `go args...` in dir in a fresh hermetic environment plus env
// ("KEY=value", later wins). Each call has its own module cache; use New to
// share one across runs.
func Run(t testing.TB, dir string, env []string, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	return New(t, env...).Run(dir, args...)
}
