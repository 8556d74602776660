package gittest_test

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/testing/gittest"
	"github.com/modgate/modgate/internal/testing/gotest"
)

// The go command itself, with GOPROXY=direct, fetches a module from the server
// through url.insteadOf: the fixture the private-module oracle relies on works.
func TestDirectGoCommand(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("first", map[string]string{"go.mod": "module corp.example/app.git\n\ngo 1.21\n", "app.go": "package app\n"})
	repo.Tag("v1.0.0")

	g := gotest.New(t, "GOPROXY=direct", "GOPRIVATE=corp.example")
	gitconfig := "[url \"" + srv.AuthURL() + "/\"]\n\tinsteadOf = https://corp.example/\n"
	if err := os.WriteFile(filepath.Join(g.Home, ".gitconfig"), []byte(gitconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	out, stderr, err := g.Run("", "mod", "download", "-json", "corp.example/app.git@v1.0.0")
	if err != nil {
		t.Fatalf("go mod download: %v\n%s", err, stderr)
	}
	if !strings.Contains(out, `"Version": "v1.0.0"`) {
		t.Errorf("unexpected output:\n%s", out)
	}
	reqs := srv.Requests()
	if len(reqs) == 0 {
		t.Fatal("the git server saw no request")
	}
	t.Logf("requests: %q", reqs)
}
