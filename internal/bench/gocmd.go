package bench

import (
	"bytes"
	"context"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// deadProxy is an HTTP proxy address nothing listens on (port 9, discard). The
// benchmark's clients get it as HTTP_PROXY and HTTPS_PROXY: requests to loopback
// are never proxied (net/http's ProxyFromEnvironment), so any request that would
// leave the machine fails loudly instead of silently skewing a figure.
const deadProxy = "http://127.0.0.1:9"

// goClient runs the go command in a copy of the benchmark graph.
type goClient struct {
	goBin string
	dir   string // the graph copy the command runs in
	home  string // HOME, GOCACHE and GOPATH live here
	goSum []byte // the graph's go.sum, which no run may change
}

func newGoClient(goBin, graphSrc, dir string) (*goClient, error) {
	c := &goClient{goBin: goBin, dir: filepath.Join(dir, "graph"), home: filepath.Join(dir, "home")}
	if err := copyGraph(graphSrc, c.dir); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(c.home, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	sum, err := os.ReadFile(filepath.Join(c.dir, "go.sum"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	c.goSum = sum
	// In a fresh HOME the go command's telemetry is on ("local"): every run would
	// write counter files and may start a background child that outlives it, work
	// and noise in a measured run. Turning it off writes only into this HOME.
	cmd := exec.Command(goBin, "telemetry", "off")
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + c.home, "GOENV=off", "GOTOOLCHAIN=local"}
	if v, ok := os.LookupEnv("GOROOT"); ok {
		cmd.Env = append(cmd.Env, "GOROOT="+v)
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: go telemetry off: %w\n%s", err, out)
	}
	return c, nil
}

// offlineEnv is the whole environment of a measured run, built from nothing so
// that the developer's go env file, GOFLAGS, GOPRIVATE or proxy settings cannot
// change what is measured: the only module source is proxy, the checksum database
// is off (go.sum holds every hash, and the go command still verifies each module
// against it), the toolchain is the local one, and the network is unreachable.
func (c *goClient) offlineEnv(proxy, modcache string) []string {
	env := []string{
		"PATH=" + os.Getenv("PATH"),
		"HTTP_PROXY=" + deadProxy,
		"HTTPS_PROXY=" + deadProxy,
		"NO_PROXY=",
	}
	if v, ok := os.LookupEnv("GOROOT"); ok {
		env = append(env, "GOROOT="+v)
	}
	return append(env, c.goVars(proxy, "off", modcache)...)
}

// onlineEnv is the environment for populating: the caller's, for its network
// settings (proxies, certificates), with every go variable that matters fixed and
// the configuration directory in the client's own HOME.
func (c *goClient) onlineEnv(proxy, sumdb, modcache string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if !strings.HasPrefix(k, "GO") && k != "HOME" && k != "XDG_CONFIG_HOME" {
			env = append(env, kv)
		}
	}
	if v, ok := os.LookupEnv("GOROOT"); ok {
		env = append(env, "GOROOT="+v)
	}
	return append(env, c.goVars(proxy, sumdb, modcache)...)
}

func (c *goClient) goVars(proxy, sumdb, modcache string) []string {
	return []string{
		"HOME=" + c.home,
		"GOENV=off",
		"GOTOOLCHAIN=local",
		"GO111MODULE=on",
		"GOWORK=off",
		"GOFLAGS=-modcacherw", // so a finished module cache can be deleted
		"GOPROXY=" + proxy,
		"GOSUMDB=" + sumdb,
		"GONOPROXY=",
		"GONOSUMDB=",
		"GOPRIVATE=",
		"GOINSECURE=",
		"GOMODCACHE=" + modcache,
		"GOCACHE=" + filepath.Join(c.home, "gocache"),
		"GOPATH=" + filepath.Join(c.home, "gopath"),
	}
}

// goRun is one timed go command.
type goRun struct {
	Wall time.Duration
	CPU  time.Duration // user + system time of the go command
}

// downloadAll runs `go mod download all` with env and checks that it downloaded
// wantZips module zips and left go.sum alone (an added line would mean a module
// was accepted without being verified against the committed hashes).
func (c *goClient) downloadAll(ctx context.Context, env []string, modcache string, wantZips int) (goRun, error) {
	cmd := exec.CommandContext(ctx, c.goBin, "mod", "download", "all")
	cmd.Dir = c.dir
	cmd.Env = env
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	wall := time.Since(start)
	if err != nil {
		return goRun{}, fmt.Errorf("bench: go mod download all: %w\n%s", err, tail(out.Bytes(), 2000))
	}
	run := goRun{Wall: wall, CPU: cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime()}
	if err := c.checkGoSum(); err != nil {
		return run, err
	}
	if wantZips >= 0 {
		n, err := countFiles(filepath.Join(modcache, "cache", "download"), ".zip")
		if err != nil {
			return run, err
		}
		if n != wantZips {
			return run, fmt.Errorf("bench: go mod download all fetched %d module zips, want %d", n, wantZips)
		}
	}
	return run, nil
}

func (c *goClient) checkGoSum() error {
	got, err := os.ReadFile(filepath.Join(c.dir, "go.sum"))
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if !bytes.Equal(got, c.goSum) {
		return fmt.Errorf("bench: go mod download all changed go.sum: testdata/bench/graph/go.sum must hold the hash of every module in 'go list -m all'")
	}
	return nil
}

// copyGraph copies the graph module's files (it is flat) into dst, so runs never
// write into the source tree.
func copyGraph(src, dst string) error {
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	entries, err := os.ReadDir(src)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		data, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			return fmt.Errorf("bench: %w", err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), data, 0o644); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// countFiles counts the regular files under dir whose names end in suffix.
func countFiles(dir, suffix string) (int, error) {
	n := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() && strings.HasSuffix(d.Name(), suffix) {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("bench: counting %s files: %w", suffix, err)
	}
	return n, nil
}

// removeAll removes a directory tree, making read-only module cache directories
// writable first if a plain removal fails.
func removeAll(dir string) error {
	if err := os.RemoveAll(dir); err == nil {
		return nil
	}
	filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(path, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

func tail(b []byte, n int) []byte {
	if len(b) > n {
		return b[len(b)-n:]
	}
	return b
}
