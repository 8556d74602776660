package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"github.com/modgate/modgate/internal/app"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gittest"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// Private module paths in these tests end their repository element in ".git"
// (corp.example/root.git/...): for such paths the go command needs no ?go-get=1
// discovery and asks git for https://corp.example/root directly, which a
// url.insteadOf in the direct run's .gitconfig sends to the loopback git server.
// modgate reaches the same repositories through its route.
const privatePrefix = "corp.example"

// privateModgate is modgate in-process with a route from corp.example/<repo>.git
// to the git server, authenticating with password.
type privateModgate struct {
	URL      string
	Core     *app.Core
	CacheDir string
	Logs     *safeBuffer // modgate's JSON log
}

func startPrivateProxy(t *testing.T, upstreamURL, gitURL, password string, mutate ...func(*config.Config)) *privateModgate {
	t.Helper()
	pwFile := filepath.Join(t.TempDir(), "git-token")
	if err := os.WriteFile(pwFile, []byte(password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	cfg := config.Defaults()
	cfg.Cache.Dir = t.TempDir()
	cfg.Upstream.Proxies = upstreamURL
	cfg.Auth.Anonymous = true
	cfg.SumDB.Names = []string{testSumDB}
	cfg.SumDB.Verify = false // the fixtures mount no checksum database
	cfg.Private.Routes = []config.PrivateRoute{{
		Pattern:     privatePrefix,
		Repo:        gitURL + "/{path}",
		RootDepth:   2,
		Credentials: config.GitCredentials{Username: gittest.User, PasswordFile: pwFile},
	}}
	for _, m := range mutate {
		m(&cfg)
	}
	logs := &safeBuffer{}
	c, err := app.Build(app.ServerOptions{Config: cfg, Logger: slog.New(slog.NewJSONHandler(logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	ts := httptest.NewServer(c.Server.Handler())
	t.Cleanup(ts.Close)
	return &privateModgate{URL: ts.URL, Core: c, CacheDir: cfg.Cache.Dir, Logs: logs}
}

// directGo is the go command fetching straight from the git server, as a
// developer without modgate would: GOPROXY=direct, GOPRIVATE, git credentials.
func directGo(t *testing.T, srv *gittest.Server) *gotest.Go {
	t.Helper()
	g := gotest.New(t, "GOPROXY=direct", "GOPRIVATE="+privatePrefix)
	gitconfig := fmt.Sprintf("[url %q]\n\tinsteadOf = https://%s/\n", srv.AuthURL()+"/", privatePrefix)
	if err := os.WriteFile(filepath.Join(g.Home, ".gitconfig"), []byte(gitconfig), 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// privateShapes builds one repository per shape of private module and returns
// the module queries that exercise them.
func privateShapes(t *testing.T, srv *gittest.Server) []string {
	t.Helper()
	const lic = "Copyright Corp. All rights reserved.\n"

	// A root module: releases, an annotated tag, a bare commit between tags, a
	// branch head after the last tag, and contents the zip rules act on (vendor
	// tree, nested module, export-ignore attribute, symlink-free subpackages).
	root := srv.NewRepo(t, "root.git")
	root.Commit("v1.0.0", map[string]string{
		"LICENSE": lic,
		"go.mod":  "module corp.example/root.git\n\ngo 1.21\n",
		"root.go": "package root\n\nfunc Hello() string { return \"hello\" }\n",
	})
	root.Tag("v1.0.0")
	bare := root.Commit("between tags", map[string]string{
		"util/util.go":                "package util\n",
		"vendor/modules.txt":          "# example.com/dep v1.0.0\n",
		"vendor/example.com/dep/d.go": "package dep\n",
		"tools/go.mod":                "module corp.example/root.git/tools\n",
		"tools/tools.go":              "package tools\n",
		".gitattributes":              "secret.txt export-ignore\nversion.go export-subst\n",
		"secret.txt":                  "kept in the zip: the go command disables export-ignore\n",
		"version.go":                  "package root\n\n// $Format:%H$\n",
	})
	root.Commit("v1.1.0", map[string]string{"root.go": "package root\n\nfunc Hello() string { return \"hello, v1.1\" }\n"})
	root.AnnotatedTag("v1.1.0")
	root.Commit("work on main", map[string]string{"next.go": "package root\n"})

	// A module in a subdirectory with prefixed tags, a pre-release and a commit
	// after it; the repository root is a module of its own.
	nested := srv.NewRepo(t, "nested.git")
	nested.Commit("root and sub", map[string]string{
		"LICENSE":    lic,
		"go.mod":     "module corp.example/nested.git\n\ngo 1.21\n",
		"nested.go":  "package nested\n",
		"sub/go.mod": "module corp.example/nested.git/sub\n\ngo 1.21\n",
		"sub/sub.go": "package sub\n",
	})
	nested.Tag("v0.1.0", "sub/v1.0.0")
	nested.Commit("sub beta", map[string]string{"sub/beta.go": "package sub\n"})
	nested.Tag("sub/v1.1.0-beta.1")
	subHead := nested.Commit("sub after beta", map[string]string{"sub/more.go": "package sub\n"})

	// Major versions: v2 in a major subdirectory, v3 on a major branch.
	major := srv.NewRepo(t, "major.git")
	major.Commit("v1", map[string]string{
		"go.mod":   "module corp.example/major.git\n\ngo 1.21\n",
		"major.go": "package major\n",
	})
	major.Tag("v1.0.0")
	major.Commit("v2 in a subdirectory", map[string]string{
		"v2/go.mod":   "module corp.example/major.git/v2\n\ngo 1.21\n",
		"v2/major.go": "package major\n\nconst V = 2\n",
	})
	major.Tag("v2.0.0")
	major.Git("checkout", "-q", "-b", "v3")
	major.Commit("v3 on a branch", map[string]string{
		"go.mod":   "module corp.example/major.git/v3\n\ngo 1.21\n",
		"major.go": "package major\n\nconst V = 3\n",
	})
	major.Tag("v3.0.0")
	v3Head := major.Commit("v3 work", map[string]string{"extra.go": "package major\n"})
	major.Git("checkout", "-q", "main")

	// No go.mod anywhere: v2+ tags are +incompatible.
	legacy := srv.NewRepo(t, "legacy.git")
	legacy.Commit("v1", map[string]string{"legacy.go": "package legacy\n"})
	legacy.Tag("v1.0.0")
	legacy.Commit("v2", map[string]string{"two.go": "package legacy\n"})
	legacy.Tag("v2.0.0")
	legacy.Commit("v3", map[string]string{"three.go": "package legacy\n"})
	legacy.Tag("v3.1.0")

	// A retraction: the latest release retracts its predecessor.
	retract := srv.NewRepo(t, "retract.git")
	for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		gomod := "module corp.example/retract.git\n\ngo 1.21\n"
		if v == "v1.2.0" {
			gomod += "\nretract v1.1.0 // broken\n"
		}
		retract.Commit(v, map[string]string{"go.mod": gomod, "r.go": "package retract\n\n// " + v + "\n"})
		retract.Tag(v)
	}

	// No tags at all: v0.0.0 pseudo-versions.
	notags := srv.NewRepo(t, "notags.git")
	notags.Commit("one", map[string]string{"go.mod": "module corp.example/notags.git\n\ngo 1.21\n", "n.go": "package notags\n"})
	notags.Commit("two", map[string]string{"m.go": "package notags\n"})

	return []string{
		"corp.example/root.git@v1.0.0",
		"corp.example/root.git@v1.1.0",
		"corp.example/root.git@main",
		"corp.example/root.git@" + bare[:12],
		"corp.example/nested.git@v0.1.0",
		"corp.example/nested.git/sub@v1.0.0",
		"corp.example/nested.git/sub@v1.1.0-beta.1",
		"corp.example/nested.git/sub@" + subHead,
		"corp.example/major.git@v1.0.0",
		"corp.example/major.git/v2@v2.0.0",
		"corp.example/major.git/v3@v3.0.0",
		"corp.example/major.git/v3@" + v3Head[:12],
		"corp.example/legacy.git@v1.0.0",
		"corp.example/legacy.git@v2.0.0+incompatible",
		"corp.example/legacy.git@latest",
		"corp.example/retract.git@v1.1.0",
		"corp.example/retract.git@latest",
		"corp.example/notags.git@main",
		"corp.example/notags.git@latest",
	}
}

// download runs `go mod download -json` and returns one line per module —
// "path@version zip-hash go.mod-hash" — plus each .mod file's bytes.
func download(t *testing.T, g *gotest.Go, queries []string) ([]string, map[string][]byte) {
	t.Helper()
	stdout, stderr, err := g.Run("", append([]string{"mod", "download", "-json"}, queries...)...)
	if err != nil {
		t.Fatalf("go mod download: %v\n%s\n%s", err, stderr, stdout)
	}
	var lines []string
	mods := make(map[string][]byte)
	for _, d := range parseDownloadFiles(t, stdout) {
		if d.Error != "" {
			t.Errorf("%s@%s: %s", d.Path, d.Version, d.Error)
			continue
		}
		key := d.Path + "@" + d.Version
		lines = append(lines, key+" "+d.Sum+" "+d.GoModSum)
		data, err := os.ReadFile(d.GoMod)
		if err != nil {
			t.Fatal(err)
		}
		mods[key] = data
	}
	slices.Sort(lines)
	return slices.Compact(lines), mods
}

type downloadFiles struct {
	Path, Version, Sum, GoModSum, GoMod, Error string
}

func parseDownloadFiles(t *testing.T, out string) []downloadFiles {
	t.Helper()
	var res []downloadFiles
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var d downloadFiles
		if err := dec.Decode(&d); err != nil {
			t.Fatalf("decoding go mod download -json: %v\n%s", err, out)
		}
		res = append(res, d)
	}
	return res
}

// The oracle: for every shape of private module, `go mod download` through
// modgate and `go mod download` straight from git (GOPROXY=direct) agree on the
// versions, the .mod bytes and the h1 hashes — and no private path reaches the
// public mirror or the checksum database.
func TestPrivateModulesMatchDirect(t *testing.T) {
	srv := gittest.NewServer(t)
	queries := privateShapes(t, srv)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)

	direct := directGo(t, srv)
	want, wantMods := download(t, direct, queries)

	mg := startPrivateProxy(t, upstream.URL, srv.URL, gittest.Password)
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key(), "GONOSUMDB="+privatePrefix)
	got, gotMods := download(t, g, queries)

	if !slices.Equal(got, want) {
		t.Errorf("through modgate:\n%s\nstraight from git:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	t.Logf("downloaded:\n%s", strings.Join(want, "\n"))
	if len(want) < 15 {
		t.Errorf("only %d distinct module versions downloaded; the shapes did not all resolve:\n%s", len(want), strings.Join(want, "\n"))
	}
	for key, w := range wantMods {
		if !bytes.Equal(gotMods[key], w) {
			t.Errorf("%s: .mod through modgate %q, straight from git %q", key, gotMods[key], w)
		}
	}

	t.Run("list-versions", func(t *testing.T) {
		for _, mod := range []string{
			"corp.example/root.git", "corp.example/nested.git", "corp.example/nested.git/sub",
			"corp.example/major.git", "corp.example/major.git/v2", "corp.example/major.git/v3",
			"corp.example/legacy.git", "corp.example/retract.git", "corp.example/notags.git",
		} {
			wantOut, stderr, err := direct.Run("", "list", "-m", "-versions", mod)
			if err != nil {
				t.Fatalf("direct go list -m -versions %s: %v\n%s", mod, err, stderr)
			}
			gotOut, stderr, err := g.Run("", "list", "-m", "-versions", mod)
			if err != nil {
				t.Fatalf("go list -m -versions %s: %v\n%s", mod, err, stderr)
			}
			if gotOut != wantOut {
				t.Errorf("go list -m -versions %s: through modgate %q, straight from git %q", mod, gotOut, wantOut)
			}
		}
	})

	t.Run("get-into-a-module", func(t *testing.T) {
		dir := g.MainModule("corp.example/app")
		writeFile(t, filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"corp.example/root.git\"\n\nfunc main() { println(root.Hello()) }\n"))
		if _, stderr, err := g.Run(dir, "get", "corp.example/root.git@latest"); err != nil {
			t.Fatalf("go get: %v\n%s", err, stderr)
		}
		assertRequires(t, dir, "corp.example/root.git v1.1.0")
		if out, stderr, err := g.Run(dir, "run", "."); err != nil || !strings.Contains(out+stderr, "hello, v1.1") {
			t.Fatalf("go run: %v\n%s%s", err, out, stderr)
		}
		// A package path: the go command probes corp.example/root.git/util as a
		// module first, which must answer "no such module", not fail the get.
		if _, stderr, err := g.Run(dir, "get", "corp.example/root.git/util@latest"); err != nil {
			t.Fatalf("go get of a package in a private module: %v\n%s", err, stderr)
		}
		assertRequires(t, dir, "corp.example/root.git v1.1.0")
	})

	// A developer who forgot GONOSUMDB: their go command asks modgate's checksum
	// database proxy, which refuses locally.
	forgetful := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	if _, stderr, err := forgetful.Run("", "mod", "download", "corp.example/root.git@v1.0.0"); err == nil {
		t.Errorf("download without GONOSUMDB verified a private module against the public checksum database:\n%s", stderr)
	}
	resp, err := http.Get(mg.URL + "/sumdb/" + testSumDB + "/lookup/corp.example/root.git@v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("checksum database lookup of a routed private path: %d, want 404", resp.StatusCode)
	}

	for _, p := range upstream.Paths() {
		if strings.Contains(p, privatePrefix) {
			t.Errorf("the public mirror was asked for private path %s", p)
		}
	}
	for _, p := range db.LookedUp() {
		if strings.Contains(p, privatePrefix) {
			t.Errorf("the checksum database was asked about private path %s", p)
		}
	}
}

// A git server refusing modgate's credentials, unreachable, or lacking the
// repository or the revision: each is an error the developer can act on, and
// none names the git server or the credentials.
func TestPrivateSourceErrors(t *testing.T) {
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "app.git")
	repo.Commit("v1", map[string]string{"go.mod": "module corp.example/app.git\n", "a.go": "package app\n"})
	repo.Tag("v1.0.0")

	closed := httptest.NewServer(http.NotFoundHandler())
	closedURL := closed.URL
	closed.Close()

	tests := []struct {
		name       string
		gitURL     string
		password   string
		path       string
		wantStatus int
		wantBody   string
		wantLog    string // the cause, logged for the operator
	}{
		{name: "fail/credentials-rejected", gitURL: srv.URL, password: "wrong", path: "/corp.example/app.git/@v/v1.0.0.info",
			wantStatus: 502, wantBody: "private git source rejected modgate's credentials", wantLog: "could not read Username for '" + srv.URL},
		{name: "fail/unreachable", gitURL: closedURL, password: gittest.Password, path: "/corp.example/app.git/@v/list",
			wantStatus: 502, wantBody: "private git source unreachable", wantLog: "Failed to connect"},
		{name: "fail/repository-missing", gitURL: srv.URL, password: gittest.Password, path: "/corp.example/nope.git/@v/list",
			wantStatus: 404, wantBody: "repository not found"},
		{name: "fail/unknown-revision", gitURL: srv.URL, password: gittest.Password, path: "/corp.example/app.git/@v/v1.9.9.info",
			wantStatus: 404, wantBody: "unknown revision v1.9.9"},
		{name: "fail/unknown-branch", gitURL: srv.URL, password: gittest.Password, path: "/corp.example/app.git/@v/nosuchbranch.info",
			wantStatus: 404, wantBody: "unknown revision nosuchbranch"},
		{name: "ok/version", gitURL: srv.URL, password: gittest.Password, path: "/corp.example/app.git/@v/v1.0.0.mod",
			wantStatus: 200, wantBody: "module corp.example/app.git\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			mg := startPrivateProxy(t, "off", tt.gitURL, tt.password)
			resp, err := http.Get(mg.URL + tt.path)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.wantStatus || !strings.Contains(string(body), tt.wantBody) {
				t.Errorf("GET %s = %d %q, want %d %q", tt.path, resp.StatusCode, body, tt.wantStatus, tt.wantBody)
			}
			for _, secret := range []string{strings.TrimPrefix(tt.gitURL, "http://"), gittest.Password, "wrong", "127.0.0.1"} {
				if strings.Contains(string(body), secret) {
					t.Errorf("error body %q reveals %q", body, secret)
				}
			}
			logs := mg.Logs.String()
			if !strings.Contains(logs, tt.wantLog) {
				t.Errorf("log lacks %q:\n%s", tt.wantLog, logs)
			}
			if strings.Contains(logs, tt.password) {
				t.Errorf("log contains the git password:\n%s", logs)
			}
			if tt.wantStatus != 200 {
				if objs := storedObjects(t, mg.CacheDir); len(objs) != 0 {
					t.Errorf("a failed request left cached objects: %v", objs)
				}
			}
		})
	}

	// The go command prints the reason.
	mg := startPrivateProxy(t, "off", srv.URL, "wrong")
	g := gotest.New(t, "GOPROXY="+mg.URL, "GONOSUMDB="+privatePrefix)
	_, stderr, err := g.Run("", "mod", "download", "corp.example/app.git@v1.0.0")
	if err == nil || !strings.Contains(stderr, "private git source rejected modgate's credentials") {
		t.Errorf("go mod download with rejected credentials: err=%v\n%s", err, stderr)
	}
}

// storedObjects lists the cache's stored objects (not mirrors or scratch files).
func storedObjects(t *testing.T, dir string) []string {
	t.Helper()
	var objs []string
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return nil
		}
		if d.IsDir() && strings.HasPrefix(d.Name(), ".") && p != dir {
			return filepath.SkipDir
		}
		if !d.IsDir() {
			objs = append(objs, strings.TrimPrefix(p, dir))
		}
		return nil
	})
	return objs
}

// Closing figures: the git round trips of a cold `go mod download` of one
// private module, and cold and warm latency of a ~10 MB private zip.
func TestPrivateModuleCosts(t *testing.T) {
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "big.git")
	files := map[string]string{"go.mod": "module corp.example/big.git\n\ngo 1.21\n", "big.go": "package big\n"}
	for i := range 10 {
		blob := make([]byte, 1<<20)
		rand.Read(blob)
		files[fmt.Sprintf("data/blob%d.bin", i)] = string(blob)
	}
	repo.Commit("big", files)
	repo.Tag("v1.0.0")

	mg := startPrivateProxy(t, "off", srv.URL, gittest.Password)
	g := gotest.New(t, "GOPROXY="+mg.URL, "GONOSUMDB="+privatePrefix)
	srv.ResetRequests()
	if _, stderr, err := g.Run("", "mod", "download", "corp.example/big.git@v1.0.0"); err != nil {
		t.Fatalf("go mod download: %v\n%s", err, stderr)
	}
	reqs := srv.Requests()
	fetches := mg.Core.Git.Fetches()
	t.Logf("cold go mod download of one private module: %d git fetch(es), %d HTTP requests to the git server: %q", fetches, len(reqs), reqs)
	if fetches != 1 {
		t.Errorf("cold download cost %d git fetches, want 1", fetches)
	}
	resp, err := http.Get(mg.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `modgate_git_fetches_total{result="ok"} 1`) {
		t.Errorf("metrics lack the fetch:\n%s", metrics)
	}

	// A second modgate, cold, for the zip alone.
	mirrors := t.TempDir()
	shareMirrors := func(c *config.Config) { c.Private.MirrorDir = mirrors }
	mg2 := startPrivateProxy(t, "off", srv.URL, gittest.Password, shareMirrors)
	get := func(base string) (time.Duration, int) {
		start := time.Now()
		resp, err := http.Get(base + "/corp.example/big.git/@v/v1.0.0.zip")
		if err != nil {
			t.Fatal(err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil || resp.StatusCode != 200 {
			t.Fatalf("GET zip: %d %v", resp.StatusCode, err)
		}
		return time.Since(start), int(n)
	}
	cold, size := get(mg2.URL)
	warm, _ := get(mg2.URL)
	// A replica with an empty object cache but the mirror on disk: an
	// incremental fetch that brings nothing, then archive and zip.
	mg3 := startPrivateProxy(t, "off", srv.URL, gittest.Password, shareMirrors)
	coldCacheWarmMirror, _ := get(mg3.URL)
	// For reference: the go command fetching the same module straight from git.
	direct := directGo(t, srv)
	srv.ResetRequests()
	start := time.Now()
	if _, stderr, err := direct.Run("", "mod", "download", "corp.example/big.git@v1.0.0"); err != nil {
		t.Fatalf("direct go mod download: %v\n%s", err, stderr)
	}
	t.Logf("direct (GOPROXY=direct) cold go mod download of the same module: %v, %d HTTP requests to the git server",
		time.Since(start).Round(time.Millisecond), len(srv.Requests()))
	t.Logf("%.1f MB private zip: cold %v (clone + archive + zip), cold cache with the mirror on disk %v, warm %v",
		float64(size)/(1<<20), cold.Round(time.Millisecond), coldCacheWarmMirror.Round(time.Millisecond), warm.Round(time.Millisecond))
	if size < 10<<20 {
		t.Errorf("zip is %d bytes, want over 10 MB", size)
	}
}

// Private modules from git follow the policy like any other: the owning team
// pulls, another team is refused with the reason, an unowned private module is
// refused, and a private path that does not exist is 404 whoever asks.
func TestPrivateModulesFollowPolicy(t *testing.T) {
	srv := gittest.NewServer(t)
	for _, name := range []string{"payments/ledger.git", "secret/vault.git"} {
		repo := srv.NewRepo(t, name)
		repo.Commit("v1", map[string]string{"go.mod": "module corp.example/" + name + "\n", "x.go": "package x\n"})
		repo.Tag("v1.0.0")
	}
	pwFile := filepath.Join(t.TempDir(), "git-token")
	writeFile(t, pwFile, []byte(gittest.Password))

	idp := oidctest.Start(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, "off")
	cfg.Cache.Dir = t.TempDir()
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
owners:
  corp.example/payments:
    team: payments
`})
	cfg.Private.Routes = []config.PrivateRoute{{
		Pattern: privatePrefix, Repo: srv.URL + "/{path}", RootDepth: 3,
		Credentials: config.GitCredentials{Username: gittest.User, PasswordFile: pwFile},
	}}
	url := startApp(t, cfg)

	tests := []struct {
		name, team, module string
		wantErr            string
	}{
		{name: "ok/owner-pulls", team: "payments", module: "corp.example/payments/ledger.git@v1.0.0"},
		{name: "fail/other-team-refused", team: "risk", module: "corp.example/payments/ledger.git@v1.0.0",
			wantErr: "403 Forbidden\n\tserver response: team risk may not pull corp.example/payments/ledger.git@v1.0.0: owned by team payments"},
		{name: "fail/unowned-private", team: "payments", module: "corp.example/secret/vault.git@v1.0.0",
			wantErr: "may not pull corp.example/secret/vault.git@v1.0.0: no team owns it"},
		{name: "fail/missing-private-is-404", team: "risk", module: "corp.example/payments/nope.git@v1.0.0",
			wantErr: "404 Not Found\n\tserver response: repository not found"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB="+privatePrefix, "SSL_CERT_FILE="+p.CAFile)
			writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, idp.IssueToken("dev-"+tt.team, []string{"team-" + tt.team})))
			_, stderr, err := g.Run("", "mod", "download", tt.module)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("go mod download %s: %v\n%s", tt.module, err, stderr)
				}
				return
			}
			if err == nil || !strings.Contains(stderr, tt.wantErr) {
				t.Fatalf("go mod download %s: err=%v; want %q in:\n%s", tt.module, err, tt.wantErr, stderr)
			}
		})
	}
}
