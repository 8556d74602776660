// Package gittest is a test helper: a real git server on loopback (git's own
// smart-HTTP backend, `git http-backend`, run as CGI behind net/http/cgi) with HTTP
// Basic authentication and request counting, and a small builder for the
// repositories it serves, driven by the git command line.
package gittest

import (
	"crypto/subtle"
	"fmt"
	"io"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// Credentials the server accepts.
const (
	User     = "modgate"
	Password = "git-s3cret"
)

// Server is a git smart-HTTP server over the repositories in Root.
type Server struct {
	URL  string // http://127.0.0.1:port, no trailing slash
	Root string // GIT_PROJECT_ROOT: one directory per repository

	caseInsensitive bool

	mu       sync.Mutex
	requests []string // "METHOD /path?query status"
	down     bool
}

// Option configures a Server.
type Option func(*Server)

// CaseInsensitive makes the server resolve repository paths case-insensitively,
// as the common hosting services do for owner and repository names:
// /Payments/Ledger.git serves the repository created as payments/ledger.git.
func CaseInsensitive() Option { return func(s *Server) { s.caseInsensitive = true } }

// NewServer starts a git server; it stops at test cleanup.
func NewServer(t testing.TB, opts ...Option) *Server {
	t.Helper()
	git, err := exec.LookPath("git")
	if err != nil {
		t.Fatalf("gittest: git not found: %v", err)
	}
	s := &Server{Root: t.TempDir()}
	for _, o := range opts {
		o(s)
	}
	backend := &cgi.Handler{
		Path: git,
		Args: []string{"http-backend"},
		Env: []string{
			"GIT_PROJECT_ROOT=" + s.Root,
			"GIT_HTTP_EXPORT_ALL=1",
			"GIT_CONFIG_NOSYSTEM=1",
			"HOME=" + s.Root,
		},
		// http-backend complains on stderr about every missing repository, which
		// tests ask for on purpose.
		Stderr: io.Discard,
	}
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rec := &statusRecorder{ResponseWriter: w, status: 200}
		defer func() { s.record(r, rec.status) }()
		s.mu.Lock()
		down := s.down
		s.mu.Unlock()
		if down {
			rec.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		u, p, ok := r.BasicAuth()
		if !ok || subtle.ConstantTimeCompare([]byte(u+":"+p), []byte(User+":"+Password)) != 1 {
			rec.Header().Set("WWW-Authenticate", `Basic realm="git"`)
			http.Error(rec, "authentication required", http.StatusUnauthorized)
			return
		}
		if s.caseInsensitive {
			r.URL.Path = s.resolveCase(r.URL.Path)
		}
		backend.ServeHTTP(rec, r)
	}))
	t.Cleanup(ts.Close)
	s.URL = ts.URL
	return s
}

// resolveCase maps the repository part of a request path to the directory that
// matches it case-insensitively, element by element, leaving the git protocol
// part (info/refs, git-upload-pack) as it is. Paths that match nothing are left
// alone, for http-backend to answer 404.
func (s *Server) resolveCase(p string) string {
	elems := strings.Split(strings.TrimPrefix(p, "/"), "/")
	dir := s.Root
	for i, e := range elems {
		if isRepo(dir) {
			break
		}
		if _, err := os.Stat(filepath.Join(dir, e)); err != nil {
			entries, err := os.ReadDir(dir)
			if err != nil {
				return p
			}
			for _, de := range entries {
				if de.IsDir() && strings.EqualFold(de.Name(), e) {
					elems[i] = de.Name()
					break
				}
			}
		}
		dir = filepath.Join(dir, elems[i])
	}
	return "/" + strings.Join(elems, "/")
}

// isRepo reports whether dir is a git repository (a work tree or a bare one).
func isRepo(dir string) bool {
	for _, f := range []string{".git", "HEAD"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err == nil {
			return true
		}
	}
	return false
}

type statusRecorder struct {
	http.ResponseWriter
	status int
}

func (r *statusRecorder) WriteHeader(code int) {
	r.status = code
	r.ResponseWriter.WriteHeader(code)
}

func (r *statusRecorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (s *Server) record(r *http.Request, status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	line := r.Method + " " + r.URL.Path
	if r.URL.RawQuery != "" {
		line += "?" + r.URL.RawQuery
	}
	s.requests = append(s.requests, fmt.Sprintf("%s %d", line, status))
}

// Requests returns every request served so far: "METHOD /path?query status".
func (s *Server) Requests() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.requests...)
}

// ResetRequests forgets the recorded requests.
func (s *Server) ResetRequests() {
	s.mu.Lock()
	s.requests = nil
	s.mu.Unlock()
}

// SetDown makes every request fail with 503 (down=true) or serves again.
func (s *Server) SetDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

// AuthURL is URL with the accepted credentials in it, for git's url.insteadOf.
func (s *Server) AuthURL() string {
	return strings.Replace(s.URL, "http://", "http://"+User+":"+Password+"@", 1)
}

// Repo is a working repository under the server's root, built with the git CLI.
type Repo struct {
	t    testing.TB
	Dir  string
	Name string // the path under the server: URL + "/" + Name
	// clock is the author and committer date of the next commit; each commit
	// advances it, so commit times are distinct and deterministic.
	clock time.Time
}

// NewRepo creates an empty repository named name (e.g. "team/app.git") whose
// default branch is main.
func (s *Server) NewRepo(t testing.TB, name string) *Repo {
	t.Helper()
	r := &Repo{t: t, Dir: filepath.Join(s.Root, filepath.FromSlash(name)), Name: name,
		clock: time.Date(2024, 3, 1, 12, 0, 0, 0, time.UTC)}
	if err := os.MkdirAll(r.Dir, 0o755); err != nil {
		t.Fatal(err)
	}
	r.Git("init", "-q", "-b", "main")
	return r
}

// Git runs git in the repository and returns its trimmed output.
func (r *Repo) Git(args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", args...)
	cmd.Dir = r.Dir
	date := r.clock.Format(time.RFC3339)
	cmd.Env = append(os.Environ(),
		"GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL=/dev/null",
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@corp.example",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@corp.example",
		"GIT_AUTHOR_DATE="+date, "GIT_COMMITTER_DATE="+date,
	)
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("gittest: git %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return strings.TrimSpace(string(out))
}

// Write writes files (slash-separated path → content) into the work tree.
func (r *Repo) Write(files map[string]string) {
	r.t.Helper()
	for name, data := range files {
		p := filepath.Join(r.Dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Remove deletes files from the work tree.
func (r *Repo) Remove(names ...string) {
	r.t.Helper()
	for _, n := range names {
		if err := os.RemoveAll(filepath.Join(r.Dir, filepath.FromSlash(n))); err != nil {
			r.t.Fatal(err)
		}
	}
}

// Commit writes files, commits everything and returns the commit hash.
func (r *Repo) Commit(msg string, files map[string]string) string {
	r.t.Helper()
	r.Write(files)
	r.Git("add", "-A")
	r.Git("commit", "-q", "--allow-empty", "-m", msg)
	r.clock = r.clock.Add(time.Hour)
	return r.Git("rev-parse", "HEAD")
}

// Tag creates a lightweight tag at HEAD.
func (r *Repo) Tag(names ...string) {
	r.t.Helper()
	for _, n := range names {
		r.Git("tag", n)
	}
}

// AnnotatedTag creates an annotated tag at HEAD.
func (r *Repo) AnnotatedTag(name string) {
	r.t.Helper()
	r.Git("tag", "-a", "-m", "release "+name, name)
}
