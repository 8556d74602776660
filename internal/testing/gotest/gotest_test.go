package gotest

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/modgate/modgate/internal/testing/proxytest"
)

// TestHermetic proves the test process's go settings do not reach the go
// command, and that vars and Set override the defaults.
func TestHermetic(t *testing.T) {
	t.Setenv("GOPROXY", "http://leak.invalid")
	t.Setenv("GOFLAGS", "-mod=vendor")
	t.Setenv("GOPRIVATE", "leak.invalid")
	t.Setenv("GONOSUMDB", "leak.invalid")

	g := New(t, "GOPROXY=http://127.0.0.1:9")
	g.Set("GOSUMDB", "sum.mod.test+abcd1234+AAAA")
	stdout, _, err := g.Run("", "env", "-json", "GOPROXY", "GOSUMDB", "GOFLAGS", "GOPRIVATE", "GONOSUMDB", "GOMODCACHE", "GOTOOLCHAIN")
	if err != nil {
		t.Fatalf("go env: %v", err)
	}
	var env map[string]string
	if err := json.Unmarshal([]byte(stdout), &env); err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		"GOPROXY":     "http://127.0.0.1:9",
		"GOSUMDB":     "sum.mod.test+abcd1234+AAAA",
		"GOFLAGS":     "-modcacherw",
		"GOPRIVATE":   "",
		"GONOSUMDB":   "",
		"GOMODCACHE":  g.ModCache,
		"GOTOOLCHAIN": "local",
	}
	for k, v := range want {
		if env[k] != v {
			t.Errorf("%s = %q, want %q", k, env[k], v)
		}
	}
}

func TestRunAndMainModule(t *testing.T) {
	t.Parallel()
	g := New(t)
	dir := g.MainModule("example.com/main")
	if err := os.WriteFile(filepath.Join(dir, "main.go"), []byte("package main\n\nfunc main() { println(\"hi\") }\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	stdout, _, err := g.Run(dir, "list", "-m")
	if err != nil || stdout != "example.com/main\n" {
		t.Errorf("go list -m = %q, %v", stdout, err)
	}
	if _, stderr, err := Run(t, dir, []string{"GOFLAGS=-mod=mod"}, "vet", "."); err != nil {
		t.Errorf("go vet in the main module: %v\n%s", err, stderr)
	}
	if _, _, err := Run(t, dir, nil, "no-such-command"); err == nil {
		t.Error("a failing go command returned no error")
	}
}

// TestReadOnlyModCacheCleanup downloads without -modcacherw: the test's
// TempDir removal fails (and fails the test) unless New's cleanup restores
// write permission first.
func TestReadOnlyModCacheCleanup(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.Module{Path: "mod.test/ro", Version: "v1.0.0", Files: map[string]string{
		"go.mod": "module mod.test/ro\n",
		"ro.go":  "package ro\n",
	}})
	g := New(t, "GOPROXY="+upstream.URL, "GOSUMDB=off", "GOFLAGS=")
	if _, _, err := g.Run("", "mod", "download", "mod.test/ro@v1.0.0"); err != nil {
		t.Fatalf("go mod download: %v", err)
	}
	info, err := os.Stat(filepath.Join(g.ModCache, "mod.test", "ro@v1.0.0"))
	if err != nil {
		t.Fatal(err)
	}
	if info.Mode().Perm()&0o200 != 0 {
		t.Fatalf("module dir is writable (%v): the test proves nothing", info.Mode())
	}
}
