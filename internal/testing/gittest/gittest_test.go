package gittest_test

import (
	"os"
	"os/exec"
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

// A CaseInsensitive server serves a repository under any case variant of its
// path, as hosting services do; a default server does not.
func TestCaseInsensitive(t *testing.T) {
	t.Parallel()
	for _, insensitive := range []bool{false, true} {
		var opts []gittest.Option
		if insensitive {
			opts = append(opts, gittest.CaseInsensitive())
		}
		srv := gittest.NewServer(t, opts...)
		repo := srv.NewRepo(t, "payments/ledger.git")
		head := repo.Commit("first", map[string]string{"go.mod": "module corp.example/payments/ledger\n"})
		for _, name := range []string{"payments/ledger.git", "Payments/ledger.git", "PAYMENTS/Ledger.GIT"} {
			cmd := exec.Command("git", "ls-remote", srv.AuthURL()+"/"+name, "HEAD")
			cmd.Env = append(os.Environ(), "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null", "GIT_TERMINAL_PROMPT=0")
			out, err := cmd.CombinedOutput()
			found := err == nil && strings.HasPrefix(string(out), head)
			if want := insensitive || name == "payments/ledger.git"; found != want {
				t.Errorf("insensitive=%v: ls-remote %s: found=%v, want %v (%v: %s)", insensitive, name, found, want, err, out)
			}
		}
	}
}
