package e2e

import (
	"archive/zip"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gittest"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

const gatePolicyData = `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
owners:
  corp.example/payments:
    team: payments
denylist:
  mod.test/legacy:
    reason: abandoned fork with known RCE, see SEC-7
  mod.test/hello:
    reason: v1.1.0 was built from a compromised laptop
    versions: [v1.1.0]
`

// gateEnv is modgate over TLS with PostgreSQL (audit, publish), OIDC, the shipped
// Rego policy over gatePolicyData, the public fixture upstream, and a git route
// from corp.example/<group>/<repo>.git to a real git server holding
// corp.example/payments/ledger.git (tags v1.0.0 and v1.1.0, branch feature).
type gateEnv struct {
	publishEnv
	git    *gittest.Server
	repo   *gittest.Repo
	commit string // the commit tagged v1.1.0
}

const gateModule = "corp.example/payments/ledger.git"

func startGateEnv(t *testing.T) *gateEnv {
	t.Helper()
	srv := gittest.NewServer(t)
	repo := srv.NewRepo(t, "payments/ledger.git")
	repo.Commit("v1", map[string]string{"go.mod": "module " + gateModule + "\n", "x.go": "package x\n"})
	repo.Tag("v1.0.0")
	commit := repo.Commit("v1.1", map[string]string{"x.go": "package x\n\n// v1.1\n"})
	repo.Tag("v1.1.0")
	repo.Git("branch", "feature")
	pwFile := filepath.Join(t.TempDir(), "git-token")
	writeFile(t, pwFile, []byte(gittest.Password))

	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	idp := oidctest.Start(t)
	pool, dbURL := pgtest.NewPool(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Cache.Dir = t.TempDir()
	cfg.Database.URL = dbURL
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": gatePolicyData})
	cfg.Private.Routes = []config.PrivateRoute{{
		Pattern: privatePrefix, Repo: srv.URL + "/{path}", RootDepth: 3,
		Credentials: config.GitCredentials{Username: gittest.User, PasswordFile: pwFile},
	}}
	return &gateEnv{
		publishEnv: publishEnv{
			url: startApp(t, cfg), cacheDir: cfg.Cache.Dir, caFile: p.CAFile, pool: pool,
			idp: idp, upstream: upstream, http: clientTrusting(t, p.CAFile),
		},
		git: srv, repo: repo, commit: commit,
	}
}

// goAs is the go command as a member of team, through modgate.
func (e *gateEnv) goAs(t *testing.T, team string) *gotest.Go {
	t.Helper()
	g := gotest.New(t, "GOPROXY="+e.url, "GONOSUMDB=mod.test,"+privatePrefix, "GOFLAGS=-mod=mod", "SSL_CERT_FILE="+e.caFile)
	writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(e.url, e.token("dev-"+team, team)))
	return g
}

// getAs sends GET path as a member of team with the given request id.
func (e *gateEnv) getAs(t *testing.T, team, path, requestID string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+e.token("dev-"+team, team))
	if requestID != "" {
		req.Header.Set("X-Request-Id", requestID)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// plainZip is a module zip of mod@ver whose go.mod declares mod.
func plainZip(t *testing.T, mod, ver string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	for name, body := range map[string]string{"go.mod": "module " + mod + "\n", "x.go": "package x\n\n// published " + ver + "\n"} {
		w, err := zw.Create(mod + "@" + ver + "/" + name)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Attack 4: a checksum database lookup is decided like a pull of its module, so
// a deny-listed module is not even looked up, and the refusal says why.
func TestGateSumDBLookupOfDenyListedModule(t *testing.T) {
	e := startGateEnv(t)
	code, body := e.getAs(t, "payments", "/sumdb/"+testSumDB+"/lookup/"+proxytest.LegacyPath+"@v1.0.0", "")
	if code != http.StatusForbidden || !strings.Contains(body, "mod.test/legacy is deny-listed: abandoned fork with known RCE, see SEC-7") {
		t.Errorf("lookup of a deny-listed module: %d %q, want 403 with the deny-list reason", code, body)
	}
	if got := e.upstream.Hits("sumdb/" + testSumDB + "/lookup/" + proxytest.LegacyPath + "@v1.0.0"); got != 0 {
		t.Errorf("the refused lookup reached the upstream %d times", got)
	}
	// A private path is never looked up (it would leak the name); a module the
	// caller may pull is.
	if code, body := e.getAs(t, "payments", "/sumdb/"+testSumDB+"/lookup/"+gateModule+"@v1.0.0", ""); code != http.StatusNotFound {
		t.Errorf("lookup of a private module: %d %q, want 404", code, body)
	}
	if code, body := e.getAs(t, "payments", "/sumdb/"+testSumDB+"/lookup/"+proxytest.HelloPath+"@v1.0.0", ""); code == http.StatusForbidden {
		t.Errorf("lookup of an allowed module refused: %d %q", code, body)
	}
}

// Attack 5: a caller who may not pull a module learns nothing about which of its
// versions, branches, tags and commits exist: every version and query gets the
// same 403 and reason. A path that is no module stays 404 (go get's prefix
// probing), for every caller.
func TestGateNoExistenceOracle(t *testing.T) {
	e := startGateEnv(t)
	m := "/" + gateModule
	for _, tt := range []struct{ name, path, what string }{
		{"tag/existing", m + "/@v/v1.0.0.info", "@v1.0.0"},
		{"tag/missing", m + "/@v/v1.9.9.info", "@v1.9.9"},
		{"branch/existing", m + "/@v/feature.info", "@feature"},
		{"branch/missing", m + "/@v/no-such-branch.info", "@no-such-branch"},
		{"commit/existing", m + "/@v/" + e.commit[:12] + ".info", "@" + e.commit[:12]},
		{"commit/missing", m + "/@v/0123456789ab.info", "@0123456789ab"},
		{"mod/existing", m + "/@v/v1.0.0.mod", "@v1.0.0"},
		{"mod/missing", m + "/@v/v1.9.9.mod", "@v1.9.9"},
		{"zip/existing", m + "/@v/v1.1.0.zip", "@v1.1.0"},
		{"zip/missing", m + "/@v/v1.2.3.zip", "@v1.2.3"},
		{"list", m + "/@v/list", ""},
		{"latest", m + "/@latest", ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, body := e.getAs(t, "risk", tt.path, "")
			want := "team risk may not pull " + gateModule + tt.what + ": owned by team payments\n"
			if code != http.StatusForbidden || body != want {
				t.Errorf("GET %s as team risk: %d %q, want 403 %q", tt.path, code, body, want)
			}
		})
	}
	t.Run("go-command/missing-version-is-403-too", func(t *testing.T) {
		_, stderr, err := e.goAs(t, "risk").Run("", "mod", "download", gateModule+"@v1.9.9")
		if err == nil || !strings.Contains(stderr, "403 Forbidden") || !strings.Contains(stderr, "owned by team payments") {
			t.Errorf("go mod download of a missing version as team risk: err=%v\n%s", err, stderr)
		}
	})
	t.Run("no-module-is-404", func(t *testing.T) {
		for _, team := range []string{"risk", "payments"} {
			if code, body := e.getAs(t, team, "/corp.example/payments/nope.git/@v/v1.0.0.info", ""); code != http.StatusNotFound {
				t.Errorf("a repository that does not exist, as team %s: %d %q, want 404", team, code, body)
			}
		}
	})
}

// Private lists and @latest are the union of git's tags and the versions
// published into modgate; a version that is a git tag cannot be published; a
// deleted version is gone from every source, cache included, even while its git
// tag exists.
func TestGateGitAndPublishedVersions(t *testing.T) {
	e := startGateEnv(t)
	owner := e.token("alice", "payments")
	admin := e.token("root", "platform-admins")

	if code, body := e.put(t, owner, gateModule, "v1.2.0", plainZip(t, gateModule, "v1.2.0")); code != http.StatusCreated {
		t.Fatalf("publish v1.2.0: %d %s", code, body)
	}
	t.Run("publish-over-git-tag-is-409", func(t *testing.T) {
		code, body := e.put(t, owner, gateModule, "v1.0.0", plainZip(t, gateModule, "v1.0.0"))
		if code != http.StatusConflict || !strings.Contains(body, "exists as a git tag") {
			t.Errorf("publish of a git tag: %d %q, want 409", code, body)
		}
	})
	g := e.goAs(t, "payments")
	t.Run("list-union", func(t *testing.T) {
		out, stderr, err := g.Run("", "list", "-m", "-versions", gateModule)
		if err != nil || strings.TrimSpace(out) != gateModule+" v1.0.0 v1.1.0 v1.2.0" {
			t.Fatalf("go list -m -versions = %q (%v)\n%s", out, err, stderr)
		}
		code, body := e.getAs(t, "payments", "/"+gateModule+"/@latest", "")
		var info struct{ Version string }
		json.Unmarshal([]byte(body), &info)
		if code != 200 || info.Version != "v1.2.0" {
			t.Errorf("@latest: %d %q, want v1.2.0 (published, newer than git's tags)", code, body)
		}
		for _, v := range []string{"v1.1.0", "v1.2.0"} {
			if _, stderr, err := g.Run("", "mod", "download", gateModule+"@"+v); err != nil {
				t.Fatalf("go mod download %s: %v\n%s", v, err, stderr)
			}
		}
	})
	t.Run("delete-git-version", func(t *testing.T) {
		if !cachedUnder(t, e.cacheDir, "private/"+gateModule+"/@v/v1.1.0.zip") {
			t.Fatal("v1.1.0 was not cached from git before the delete; the test proves nothing")
		}
		if code, body := e.del(t, admin, gateModule, "v1.1.0", "tag pushed by mistake"); code != http.StatusOK {
			t.Fatalf("delete v1.1.0 (a git tag): %d %s", code, body)
		}
		for _, ext := range []string{".info", ".mod", ".zip"} {
			code, body := e.getAs(t, "payments", "/"+gateModule+"/@v/v1.1.0"+ext, "")
			if code != http.StatusGone || !strings.Contains(body, "tag pushed by mistake") {
				t.Errorf("v1.1.0%s after delete: %d %q, want 410 with the reason", ext, code, body)
			}
		}
		for _, obj := range storedObjects(t, e.cacheDir) {
			if strings.Contains(obj, "v1.1.0") {
				t.Errorf("deleted version still cached: %s", obj)
			}
		}
		out, stderr, err := g.Run("", "list", "-m", "-versions", gateModule)
		if err != nil || strings.TrimSpace(out) != gateModule+" v1.0.0 v1.2.0" {
			t.Errorf("versions after the delete = %q (%v)\n%s", out, err, stderr)
		}
		if _, stderr, err := e.goAs(t, "payments").Run("", "mod", "download", gateModule+"@v1.1.0"); err == nil || !strings.Contains(stderr, "410 Gone") {
			t.Errorf("go mod download of the deleted git version: err=%v\n%s", err, stderr)
		}
		// The tag is still in git: deleting means the version is never served
		// and never published again.
		if code, body := e.put(t, owner, gateModule, "v1.1.0", plainZip(t, gateModule, "v1.1.0")); code < 400 {
			t.Errorf("publish of the deleted version: %d %q", code, body)
		}
	})
}

// cachedUnder reports whether the cache holds an object whose path ends in key.
func cachedUnder(t *testing.T, dir, key string) bool {
	for _, obj := range storedObjects(t, dir) {
		if strings.HasSuffix(filepath.ToSlash(obj), key) {
			return true
		}
	}
	return false
}

// Every request leaves exactly one audit row, and it carries the decision that
// determined the answer: also for a filtered list and for @latest falling back
// from a deny-listed version to an allowed one.
func TestGateOneAuditRowPerRequest(t *testing.T) {
	e := startGateEnv(t)
	for i, tt := range []struct {
		name, path string
		status     int
		version    string // the audit row's version, if any
		body       string // the response body, if asserted
	}{
		{name: "info", path: "/" + proxytest.HelloPath + "/@v/v1.0.0.info", status: 200, version: "v1.0.0"},
		{name: "denied-version", path: "/" + proxytest.HelloPath + "/@v/v1.1.0.zip", status: 403, version: "v1.1.0"},
		{name: "filtered-list", path: "/" + proxytest.HelloPath + "/@v/list", status: 200, body: "v1.0.0\n"},
		{name: "latest-fallback", path: "/" + proxytest.HelloPath + "/@latest", status: 200, version: "v1.0.0"},
		{name: "private-denied", path: "/" + gateModule + "/@v/v1.0.0.info", status: 403, version: "v1.0.0"},
		{name: "lookup-denied", path: "/sumdb/" + testSumDB + "/lookup/" + proxytest.LegacyPath + "@v1.0.0", status: 403, version: "v1.0.0"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			id := fmt.Sprintf("gate-audit-%d", i)
			team := "checkout"
			code, body := e.getAs(t, team, tt.path, id)
			if code != tt.status || (tt.body != "" && body != tt.body) {
				t.Fatalf("GET %s: %d %q, want %d %q", tt.path, code, body, tt.status, tt.body)
			}
			where := fmt.Sprintf("request_id = '%s'", id)
			waitCount(t, e, where, 1)
			if n := countRows(t, e.pool, where); n != 1 {
				t.Errorf("%d audit rows for one request, want 1", n)
			}
			if n := countRows(t, e.pool, where+" AND decision_id <> '' AND status = "+fmt.Sprint(tt.status)); n != 1 {
				t.Errorf("the audit row carries no decision id (or the wrong status)")
			}
			if tt.version != "" {
				if n := countRows(t, e.pool, where+" AND version = '"+tt.version+"'"); n != 1 {
					t.Errorf("the audit row does not name version %s", tt.version)
				}
			}
		})
	}
}

func waitCount(t *testing.T, e *gateEnv, where string, want int) {
	t.Helper()
	for range 200 {
		if countRows(t, e.pool, where) >= want {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}
