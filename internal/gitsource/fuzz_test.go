package gitsource

import (
	"net/url"
	"strings"
	"testing"

	"golang.org/x/mod/module"
)

// FuzzRouting: for any module path the server accepts (module.CheckPath, as
// goproxy.ParseRequest applies it), routing never panics, never sends a path to a
// route whose pattern does not match it, keeps the repository host fixed by the
// route's URL template (a path cannot redirect the fetch, and its credentials,
// to another server), and places the module inside its repository without
// traversal.
func FuzzRouting(f *testing.F) {
	for _, p := range []string{"corp.example/team/app", "corp.example/team/app/sub/v2", "corp.example/team", "other.example/x/y",
		"corp.example/team/app.git", "corp.example/a/b/c/d/e/f", "corp.example/x/v2", "gopkg.corp.example/yaml.v3", "corp.example/team/app/v1"} {
		f.Add(p)
	}
	s, err := New(Options{Dir: f.TempDir(), Routes: []Route{
		{Pattern: "corp.example", Repo: "https://git.corp.example/{path}.git"},
		{Pattern: "gopkg.corp.example", Repo: "ssh://git@ssh.corp.example/{root}", RootDepth: 2},
	}})
	if err != nil {
		f.Fatal(err)
	}
	hosts := map[string]string{"corp.example": "git.corp.example", "gopkg.corp.example": "ssh.corp.example"}
	f.Fuzz(func(t *testing.T, path string) {
		if module.CheckPath(path) != nil {
			return
		}
		m, err := s.Module(path)
		if err != nil {
			return
		}
		first, _, _ := strings.Cut(path, "/")
		wantHost, ok := hosts[first]
		if !ok || !s.Serves(path) {
			t.Fatalf("%q routed although no pattern matches", path)
		}
		u, err := url.Parse(m.m.url)
		if err != nil || u.Hostname() != wantHost {
			t.Fatalf("%q: repository URL %q leaves host %s", path, m.m.url, wantHost)
		}
		if !strings.HasPrefix(path, m.codeRoot) || strings.HasPrefix(m.codeDir, "/") {
			t.Fatalf("%q: root %q dir %q", path, m.codeRoot, m.codeDir)
		}
		for _, elem := range strings.Split(m.codeDir, "/") {
			if elem == ".." || elem == "." {
				t.Fatalf("%q: module directory %q traverses", path, m.codeDir)
			}
		}
	})
}
