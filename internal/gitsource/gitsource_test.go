package gitsource

import (
	"archive/zip"
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/gittest"
)

func newSource(t *testing.T, srv *gittest.Server, refresh time.Duration, password string) *Source {
	t.Helper()
	s, err := New(Options{
		Dir:     t.TempDir(),
		Refresh: refresh,
		Timeout: time.Minute,
		Routes: []Route{{
			Pattern:   "corp.example",
			Repo:      srv.URL + "/{path}",
			RootDepth: 2,
			Auth:      Auth{Username: gittest.User, Password: password},
		}},
	})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func mustModule(t *testing.T, s *Source, path string) *Module {
	t.Helper()
	m, err := s.Module(path)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func TestModuleRouting(t *testing.T) {
	t.Parallel()
	s, err := New(Options{Dir: t.TempDir(), Routes: []Route{
		{Pattern: "corp.example/platform/*", Repo: "ssh://git@gitlab.corp.example/{path}.git", RootDepth: 4},
		{Pattern: "corp.example", Repo: "https://git.corp.example/{path}.git"},
		{Pattern: "*.corp.example", Repo: "https://{host}/r/{root}"},
	}})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path                  string
		wantURL, wantDir, wantMajor string
		wantErr                     error
	}{
		{name: "ok/root", path: "corp.example/team/app", wantURL: "https://git.corp.example/team/app.git"},
		{name: "ok/subdirectory", path: "corp.example/team/app/sub/pkg", wantURL: "https://git.corp.example/team/app.git", wantDir: "sub/pkg"},
		{name: "ok/major-suffix", path: "corp.example/team/app/v2", wantURL: "https://git.corp.example/team/app.git", wantMajor: "/v2"},
		{name: "ok/subdirectory-major", path: "corp.example/team/app/sub/v3", wantURL: "https://git.corp.example/team/app.git", wantDir: "sub", wantMajor: "/v3"},
		{name: "ok/first-route-wins-subgroup", path: "corp.example/platform/infra/app/x", wantURL: "ssh://git@gitlab.corp.example/platform/infra/app.git", wantDir: "x"},
		{name: "ok/host-placeholder", path: "git.corp.example/a/b", wantURL: "https://git.corp.example/r/git.corp.example/a/b"},
		{name: "fail/too-short", path: "corp.example/team", wantErr: derrors.NotFound},
		{name: "fail/too-short-major", path: "corp.example/team/v2", wantErr: derrors.NotFound},
		{name: "fail/no-route", path: "example.com/team/app", wantErr: derrors.NotFound},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := s.Module(tt.path)
			if tt.wantErr != nil {
				if !errors.Is(err, tt.wantErr) {
					t.Fatalf("err = %v, want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if m.m.url != tt.wantURL || m.codeDir != tt.wantDir || m.pathMajor != tt.wantMajor {
				t.Errorf("url %q dir %q major %q, want %q %q %q", m.m.url, m.codeDir, m.pathMajor, tt.wantURL, tt.wantDir, tt.wantMajor)
			}
		})
	}
}

func TestRouteValidation(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		route   Route
		wantErr string
	}{
		{name: "fail/file-scheme", route: Route{Pattern: "x.example", Repo: "file:///srv/{path}"}, wantErr: "scheme"},
		{name: "fail/ext-transport", route: Route{Pattern: "x.example", Repo: "ext::sh -c {path}"}, wantErr: "scheme"},
		{name: "fail/password-in-url", route: Route{Pattern: "x.example", Repo: "https://u:p@git.example/{path}"}, wantErr: "credentials"},
		{name: "fail/no-placeholder", route: Route{Pattern: "x.example", Repo: "https://git.example/app"}, wantErr: "placeholder"},
		{name: "ok/ssh", route: Route{Pattern: "x.example", Repo: "ssh://git@git.example/{path}.git"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Dir: t.TempDir(), Routes: []Route{tt.route}})
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("err = %v, want %q", err, tt.wantErr)
			}
		})
	}
}

// Many concurrent cold requests for one repository cost one fetch; the
// credentials never land in the mirror's files.
func TestConcurrentRequestsShareOneFetch(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n"})
	repo.Tag("v1.0.0", "v1.0.1")
	s := newSource(t, srv, time.Hour, gittest.Password)

	var wg sync.WaitGroup
	errs := make([]error, 20)
	for i := range errs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m, err := s.Module("corp.example/app.git")
			if err == nil {
				var vs []string
				vs, err = m.Versions(context.Background())
				if err == nil && !slices.Equal(vs, []string{"v1.0.0", "v1.0.1"}) {
					err = errors.New("versions " + strings.Join(vs, " "))
				}
			}
			errs[i] = err
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := s.Fetches(); n != 1 {
		t.Errorf("%d fetches, want 1", n)
	}
	filepath.WalkDir(s.opts.Dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if b, _ := os.ReadFile(p); strings.Contains(string(b), gittest.Password) {
				t.Errorf("%s contains the git password", p)
			}
		}
		return nil
	})
}

// A tag pushed after the mirror was fetched: lists show it once the refresh TTL
// has passed; a request naming it fetches at once.
func TestNewTags(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n"})
	repo.Tag("v1.0.0")
	ctx := context.Background()

	t.Run("ok/exact-version-fetches", func(t *testing.T) {
		s := newSource(t, srv, time.Hour, gittest.Password)
		m := mustModule(t, s, "corp.example/app.git")
		if vs, err := m.Versions(ctx); err != nil || !slices.Equal(vs, []string{"v1.0.0"}) {
			t.Fatalf("Versions = %v, %v", vs, err)
		}
		repo.Tag("v1.0.1")
		time.Sleep(refetchInterval + 100*time.Millisecond)
		info, err := m.Stat(ctx, "v1.0.1")
		if err != nil || info.Version != "v1.0.1" {
			t.Fatalf("Stat(v1.0.1) = %+v, %v", info, err)
		}
		if n := s.Fetches(); n != 2 {
			t.Errorf("%d fetches, want 2", n)
		}
	})
	t.Run("ok/list-after-refresh", func(t *testing.T) {
		s := newSource(t, srv, 0, gittest.Password)
		m := mustModule(t, s, "corp.example/app.git")
		before, err := m.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		repo.Tag("v1.0.2")
		after, err := m.Versions(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if slices.Contains(before, "v1.0.2") || !slices.Contains(after, "v1.0.2") {
			t.Errorf("before %v, after %v: want v1.0.2 only after", before, after)
		}
	})
}

// With the git server down, a mirror fetched before keeps answering; a cold one
// reports the outage.
func TestGitServerDown(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n"})
	repo.Tag("v1.0.0")
	ctx := context.Background()
	warm := newSource(t, srv, 0, gittest.Password)
	if _, err := mustModule(t, warm, "corp.example/app.git").Versions(ctx); err != nil {
		t.Fatal(err)
	}
	srv.SetDown(true)
	t.Cleanup(func() { srv.SetDown(false) })
	if vs, err := mustModule(t, warm, "corp.example/app.git").Versions(ctx); err != nil || len(vs) != 1 {
		t.Errorf("warm mirror with git down: %v, %v", vs, err)
	}
	cold := newSource(t, srv, 0, gittest.Password)
	_, err := mustModule(t, cold, "corp.example/app.git").Versions(ctx)
	if derrors.Status(err) != 502 || derrors.PublicMessage(err) != "private git source unreachable" {
		t.Errorf("cold mirror with git down: %d %q (%v)", derrors.Status(err), derrors.PublicMessage(err), err)
	}
}

func TestClassify(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, stderr string
		err          error
		wantStatus   int
		wantMsg      string
	}{
		{name: "credentials/http-no-prompt", stderr: "fatal: could not read Username for 'https://git.corp.example': terminal prompts disabled", wantStatus: 502, wantMsg: "private git source rejected modgate's credentials"},
		{name: "credentials/gitlab", stderr: "remote: HTTP Basic: Access denied\nfatal: Authentication failed for 'https://gitlab.corp.example/a/b.git/'", wantStatus: 502, wantMsg: "private git source rejected modgate's credentials"},
		{name: "credentials/ssh", stderr: "git@git.corp.example: Permission denied (publickey).\nfatal: Could not read from remote repository.", wantStatus: 502, wantMsg: "private git source rejected modgate's credentials"},
		{name: "hostkey/ssh", stderr: "Host key verification failed.\nfatal: Could not read from remote repository.", wantStatus: 502, wantMsg: "private git source's SSH host key is not the one in known_hosts"},
		{name: "missing/http", stderr: "fatal: repository 'https://git.corp.example/a.git/' not found", wantStatus: 404, wantMsg: "repository not found"},
		{name: "unreachable/dns", stderr: "fatal: unable to access 'https://git.corp.example/a.git/': Could not resolve host: git.corp.example", wantStatus: 502, wantMsg: "private git source unreachable"},
		{name: "unreachable/refused", stderr: "fatal: unable to access 'http://127.0.0.1:1/a/': Failed to connect to 127.0.0.1 port 1: Connection refused", wantStatus: 502, wantMsg: "private git source unreachable"},
		{name: "timeout", stderr: "", err: context.DeadlineExceeded, wantStatus: 504, wantMsg: "private git source timed out"},
		{name: "other", stderr: "fatal: something new", wantStatus: 502, wantMsg: "private git source failed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cause := tt.err
			if cause == nil {
				cause = errors.New("exit status 128")
			}
			err := classify(&gitError{args: []string{"fetch"}, err: cause, stderr: tt.stderr})
			if got := derrors.Status(err); got != tt.wantStatus {
				t.Errorf("status %d, want %d", got, tt.wantStatus)
			}
			msg := derrors.PublicMessage(err)
			if msg != tt.wantMsg {
				t.Errorf("message %q, want %q", msg, tt.wantMsg)
			}
			if strings.Contains(msg, "corp.example") || strings.Contains(msg, "127.0.0.1") {
				t.Errorf("public message %q names the git server", msg)
			}
		})
	}
}

// A remote whose HEAD names a missing branch still serves its tags.
func TestDanglingRemoteHEAD(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n"})
	repo.Tag("v1.0.0")
	repo.Git("symbolic-ref", "HEAD", "refs/heads/renamed-away")
	s := newSource(t, srv, time.Hour, gittest.Password)
	info, err := mustModule(t, s, "corp.example/app.git").Latest(context.Background())
	if err != nil || info.Version != "v1.0.0" {
		t.Fatalf("Latest = %+v, %v", info, err)
	}
}

// Zip leaves no temporary archive behind, and a version that does not exist
// is a 404 naming it.
func TestZip(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n", "a.go": "package app\n"})
	repo.Tag("v1.0.0")
	s := newSource(t, srv, time.Hour, gittest.Password)
	m := mustModule(t, s, "corp.example/app.git")
	var buf bytes.Buffer
	if err := m.Zip(context.Background(), &buf, "v1.0.0"); err != nil {
		t.Fatal(err)
	}
	zr, err := zip.NewReader(bytes.NewReader(buf.Bytes()), int64(buf.Len()))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, f := range zr.File {
		names = append(names, f.Name)
	}
	if want := []string{"corp.example/app.git@v1.0.0/a.go", "corp.example/app.git@v1.0.0/go.mod"}; !slices.Equal(names, want) {
		t.Errorf("zip files %v, want %v", names, want)
	}
	if left, _ := filepath.Glob(filepath.Join(s.opts.Dir, archivePattern)); len(left) != 0 {
		t.Errorf("temporary archives left behind: %v", left)
	}
	err = m.Zip(context.Background(), io.Discard, "v1.0.1")
	if derrors.Status(err) != 404 || derrors.PublicMessage(err) != "unknown revision v1.0.1" {
		t.Errorf("zip of a missing version: %d %q", derrors.Status(err), derrors.PublicMessage(err))
	}
}

// ssh:// routes authenticate with the configured key and check the host key
// against the configured known_hosts.
func TestSSH(t *testing.T) {
	t.Parallel()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n"})
	repo.Tag("v1.0.0")
	sshd := srv.StartSSH(t)
	wrongHosts := filepath.Join(t.TempDir(), "known_hosts")
	other := srv.StartSSH(t) // another host key, same address format
	data, _ := os.ReadFile(other.KnownHostsFile)
	os.WriteFile(wrongHosts, []byte(strings.Replace(string(data), other.Addr[strings.LastIndex(other.Addr, ":")+1:], sshd.Addr[strings.LastIndex(sshd.Addr, ":")+1:], 1)), 0o644)

	tests := []struct {
		name            string
		key, knownHosts string
		wantVersions    []string
		wantStatus      int
		wantMsg         string
	}{
		{name: "ok/key-and-known-host", key: sshd.KeyFile, knownHosts: sshd.KnownHostsFile, wantVersions: []string{"v1.0.0"}},
		{name: "fail/key-not-accepted", key: sshd.OtherKeyFile, knownHosts: sshd.KnownHostsFile, wantStatus: 502, wantMsg: "private git source rejected modgate's credentials"},
		{name: "fail/host-key-mismatch", key: sshd.KeyFile, knownHosts: wrongHosts, wantStatus: 502, wantMsg: "private git source's SSH host key is not the one in known_hosts"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := New(Options{Dir: t.TempDir(), Timeout: time.Minute, Routes: []Route{{
				Pattern: "corp.example", Repo: "ssh://git@" + sshd.Addr + "/{path}", RootDepth: 2,
				Auth: Auth{SSHKeyFile: tt.key, KnownHostsFile: tt.knownHosts},
			}}})
			if err != nil {
				t.Fatal(err)
			}
			vs, err := mustModule(t, s, "corp.example/app.git").Versions(context.Background())
			if tt.wantStatus == 0 {
				if err != nil || !slices.Equal(vs, tt.wantVersions) {
					t.Fatalf("Versions = %v, %v", vs, err)
				}
				return
			}
			if derrors.Status(err) != tt.wantStatus || derrors.PublicMessage(err) != tt.wantMsg {
				t.Errorf("err %d %q (%v), want %d %q", derrors.Status(err), derrors.PublicMessage(err), err, tt.wantStatus, tt.wantMsg)
			}
		})
	}
}

// TestDeclaredPathMustMatch: against a git server that resolves repository paths
// case-insensitively (as hosting services do), a case variant of a module path
// reaches the real module's repository; every answer for the variant is refused
// with one line, and the zip writer gets no byte.
func TestDeclaredPathMustMatch(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	srv := gittest.NewServer(t, gittest.CaseInsensitive())
	ledger := srv.NewRepo(t, "payments/ledger.git")
	ledger.Commit("v1", map[string]string{"go.mod": "module corp.example/payments/ledger\n", "l.go": "package ledger\n"})
	ledger.Tag("v1.0.0")
	untagged := srv.NewRepo(t, "payments/untagged.git")
	untagged.Commit("first", map[string]string{"go.mod": "module corp.example/payments/untagged\n", "u.go": "package untagged\n"})
	s, err := New(Options{Dir: t.TempDir(), Refresh: time.Minute, Timeout: time.Minute, Routes: []Route{{
		Pattern: "corp.example", Repo: srv.URL + "/{path}.git", RootDepth: 3,
		Auth: Auth{Username: gittest.User, Password: gittest.Password},
	}}})
	if err != nil {
		t.Fatal(err)
	}

	// The declared path itself is served.
	good := mustModule(t, s, "corp.example/payments/ledger")
	if vs, err := good.Versions(ctx); err != nil || !slices.Equal(vs, []string{"v1.0.0"}) {
		t.Fatalf("Versions of the declared path = %q, %v", vs, err)
	}
	if err := good.Zip(ctx, io.Discard, "v1.0.0"); err != nil {
		t.Fatalf("Zip of the declared path: %v", err)
	}

	wantMsg := "corp.example/Payments/ledger@v1.0.0: go.mod declares module path corp.example/payments/ledger, not corp.example/Payments/ledger: refusing a module that does not declare exactly the requested path"
	bad := mustModule(t, s, "corp.example/Payments/ledger")
	var zipped bytes.Buffer
	calls := map[string]func() error{
		"list":   func() error { _, err := bad.Versions(ctx); return err },
		"latest": func() error { _, err := bad.Latest(ctx); return err },
		"info":   func() error { _, err := bad.Stat(ctx, "v1.0.0"); return err },
		"query":  func() error { _, err := bad.Stat(ctx, "main"); return err },
		"mod":    func() error { _, err := bad.GoMod(ctx, "v1.0.0"); return err },
		"zip":    func() error { return bad.Zip(ctx, &zipped, "v1.0.0") },
	}
	for name, call := range calls {
		err := call()
		if !errors.Is(err, derrors.NotFound) || !errors.Is(err, errDeclaredPath) {
			t.Errorf("%s: err = %v, want a declared-path refusal (404)", name, err)
			continue
		}
		// (main is the tagged commit: the query resolves to v1.0.0.)
		if msg := derrors.PublicMessage(err); msg != wantMsg {
			t.Errorf("%s: message\n got %q\nwant %q", name, msg, wantMsg)
		}
	}
	if zipped.Len() != 0 {
		t.Errorf("Zip of the variant wrote %d bytes", zipped.Len())
	}

	// Untagged: @latest is the default branch's pseudo-version, refused too.
	if _, err := mustModule(t, s, "corp.example/payments/untagged").Latest(ctx); err != nil {
		t.Fatalf("Latest of the untagged declared path: %v", err)
	}
	if _, err := mustModule(t, s, "corp.example/PAYMENTS/untagged").Latest(ctx); !errors.Is(err, errDeclaredPath) {
		t.Errorf("Latest of an untagged variant: %v, want a declared-path refusal", err)
	}
}

// A relative mirror directory (cache.dir: tmp/cache in the development config)
// works: git runs inside the mirrors, where a relative path would not resolve.
func TestRelativeMirrorDir(t *testing.T) {
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n"})
	repo.Tag("v1.0.0")
	t.Chdir(t.TempDir())
	s, err := New(Options{Dir: "tmp/cache/.git-mirrors", Timeout: time.Minute, Routes: []Route{{
		Pattern: "corp.example", Repo: srv.URL + "/{path}", RootDepth: 2,
		Auth: Auth{Username: gittest.User, Password: gittest.Password},
	}}})
	if err != nil {
		t.Fatal(err)
	}
	m := mustModule(t, s, "corp.example/app.git")
	if vs, err := m.Versions(context.Background()); err != nil || !slices.Equal(vs, []string{"v1.0.0"}) {
		t.Fatalf("Versions = %v, %v", vs, err)
	}
}
