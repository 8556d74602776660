package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

const publishPolicyData = `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
  cooldown:
    enabled: true
    hours: 72
owners:
  corp.test:
    team: platform
  corp.test/payments:
    team: payments
`

// publishEnv is a modgate over TLS with PostgreSQL, OIDC and the shipped Rego
// policy, corp.test private and owned by team platform (corp.test/payments by
// team payments), uploads limited to 256 KiB.
type publishEnv struct {
	url      string
	cacheDir string
	caFile   string
	pool     *pgxpool.Pool
	idp      *oidctest.Provider
	upstream *proxytest.Server
	http     *http.Client
}

const publishMaxZip = 256 << 10

func startPublishEnv(t *testing.T, configure ...func(*config.Config)) *publishEnv {
	t.Helper()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	idp := oidctest.Start(t)
	pool, dbURL := pgtest.NewPool(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Cache.Dir = t.TempDir()
	cfg.Database.URL = dbURL
	cfg.Private.Patterns = "corp.test"
	cfg.Publish.MaxZipSize = publishMaxZip
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": publishPolicyData})
	for _, f := range configure {
		f(&cfg)
	}
	return &publishEnv{
		url: startApp(t, cfg), cacheDir: cfg.Cache.Dir, caFile: p.CAFile, pool: pool,
		idp: idp, upstream: upstream, http: clientTrusting(t, p.CAFile),
	}
}

func (e *publishEnv) token(subject, team string) string {
	return e.idp.IssueToken(subject, []string{"team-" + team})
}

// do sends method to the publish API path of mod@ver with body and returns the
// status and body.
func (e *publishEnv) do(t *testing.T, method, token, mod, ver string, body io.Reader, size int64) (int, string) {
	t.Helper()
	p, err := publish.APIPath(mod, ver)
	if err != nil {
		p = publish.APIPrefix + mod + "/@v/" + ver
	}
	req, err := http.NewRequest(method, e.url+p, body)
	if err != nil {
		t.Fatal(err)
	}
	if size >= 0 {
		req.ContentLength = size
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, p, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (e *publishEnv) put(t *testing.T, token, mod, ver string, zipBytes []byte) (int, string) {
	t.Helper()
	return e.do(t, http.MethodPut, token, mod, ver, bytes.NewReader(zipBytes), int64(len(zipBytes)))
}

func (e *publishEnv) del(t *testing.T, token, mod, ver, reason string) (int, string) {
	t.Helper()
	b, _ := json.Marshal(publish.DeleteRequest{Reason: reason})
	return e.do(t, http.MethodDelete, token, mod, ver, bytes.NewReader(b), int64(len(b)))
}

func (e *publishEnv) get(t *testing.T, token, path string) (int, []byte) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := e.http.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

// rows counts published_versions rows of mod.
func (e *publishEnv) rows(t *testing.T, mod string) int {
	t.Helper()
	var n int
	if err := e.pool.QueryRow(context.Background(), `SELECT count(*) FROM published_versions WHERE module = $1`, mod).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// objects lists the stored files under published/ and the scratch directory.
func (e *publishEnv) objects(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, sub := range []string{"published", ".tmp"} {
		filepath.WalkDir(filepath.Join(e.cacheDir, sub), func(p string, d fs.DirEntry, err error) error {
			if err == nil && !d.IsDir() {
				rel, _ := filepath.Rel(e.cacheDir, p)
				out = append(out, filepath.ToSlash(rel))
			}
			return nil
		})
	}
	return out
}

// moduleZip builds a module zip of mod@ver: go.mod declaring goModPath (none
// if empty) and the extra entries (name relative to the zip's prefix; a name
// starting with "!" is a symlink).
func moduleZip(t *testing.T, mod, ver, goModPath string, files ...string) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	pfx := mod + "@" + ver + "/"
	add := func(name, body string, mode fs.FileMode) {
		h := &zip.FileHeader{Name: name, Method: zip.Deflate}
		h.SetMode(mode)
		w, err := zw.CreateHeader(h)
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(w, body)
	}
	if goModPath != "" {
		add(pfx+"go.mod", "module "+goModPath+"\n\ngo 1.21\n", 0o644)
	}
	for i, f := range files {
		if target, ok := strings.CutPrefix(f, "!"); ok {
			add(pfx+target, "/etc/passwd", fs.ModeSymlink|0o777)
			continue
		}
		name := f
		if !strings.Contains(f, "/") && !strings.Contains(f, "@") {
			name = pfx + f
		}
		pkg := filepath.Base(strings.TrimSuffix(mod, "/v2"))
		add(name, fmt.Sprintf("package %s\n\n// file %d\nfunc Hello() string { return %q }\n", strings.ReplaceAll(pkg, "-", ""), i, mod+"@"+ver), 0o644)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// Every way an upload can be wrong is refused with its status and one-line
// reason before anything is stored: no row, no object, no scratch file left.
func TestPublishValidation(t *testing.T) {
	env := startPublishEnv(t)
	platform := env.token("alice", "platform")
	payments := env.token("pat", "payments")
	good := func(mod, ver string) []byte { return moduleZip(t, mod, ver, mod, "lib.go") }

	tests := []struct {
		name    string
		token   string
		method  string
		mod     string
		ver     string
		body    []byte
		chunked bool // send without Content-Length
		status  int
		reason  string
	}{
		{name: "fail/no-credentials", mod: "corp.test/a", ver: "v1.0.0", body: good("corp.test/a", "v1.0.0"),
			status: 401, reason: "no credentials"},
		{name: "fail/public-path", token: platform, mod: "mod.test/hello", ver: "v1.9.0", body: good("mod.test/hello", "v1.9.0"),
			status: 403, reason: "mod.test/hello is not a private module path (private.patterns): only private modules are published to modgate"},
		{name: "fail/not-the-owning-team", token: platform, mod: "corp.test/payments/ledger", ver: "v1.0.0", body: good("corp.test/payments/ledger", "v1.0.0"),
			status: 403, reason: "team platform may not publish corp.test/payments/ledger@v1.0.0: owned by team payments"},
		{name: "fail/other-team-on-catch-all-prefix", token: payments, mod: "corp.test/a", ver: "v1.0.0", body: good("corp.test/a", "v1.0.0"),
			status: 403, reason: "team payments may not publish corp.test/a@v1.0.0: owned by team platform"},
		{name: "fail/non-canonical-version", token: platform, mod: "corp.test/a", ver: "v1.0", body: good("corp.test/a", "v1.0"),
			status: 400, reason: `version "v1.0" is not a canonical semantic version (such as "v1.0.0")`},
		{name: "fail/major-version-suffix-disagrees", token: platform, mod: "corp.test/a/v2", ver: "v1.0.0", body: good("corp.test/a/v2", "v1.0.0"),
			status: 400, reason: "should be v2, not v1"},
		{name: "fail/v2-without-suffix", token: platform, mod: "corp.test/a", ver: "v2.0.0", body: good("corp.test/a", "v2.0.0"),
			status: 400, reason: "should be v0 or v1, not v2"},
		{name: "fail/zip-prefix-names-other-version", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: good("corp.test/a", "v1.0.1"),
			status: 400, reason: `invalid module zip: corp.test/a@v1.0.1/go.mod: path does not have prefix "corp.test/a@v1.0.0/"`},
		{name: "fail/go-mod-declares-other-module", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: moduleZip(t, "corp.test/a", "v1.0.0", "corp.test/b", "lib.go"),
			status: 400, reason: `go.mod declares module "corp.test/b", not "corp.test/a"`},
		{name: "fail/symlink", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: moduleZip(t, "corp.test/a", "v1.0.0", "corp.test/a", "lib.go", "!secret.go"),
			status: 400, reason: "invalid module zip: corp.test/a@v1.0.0/secret.go is not a regular file"},
		{name: "fail/case-colliding-names", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: moduleZip(t, "corp.test/a", "v1.0.0", "corp.test/a", "lib.go", "LIB.go"),
			status: 400, reason: "case-insensitive file name collision"},
		{name: "fail/duplicate-names", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: moduleZip(t, "corp.test/a", "v1.0.0", "corp.test/a", "lib.go", "lib.go"),
			status: 400, reason: "multiple entries for file"},
		{name: "fail/not-a-zip", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: []byte("PK? not really"),
			status: 400, reason: "invalid module zip: not a zip file"},
		{name: "fail/too-large-by-content-length", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: bytes.Repeat([]byte("x"), publishMaxZip+1),
			status: 413, reason: fmt.Sprintf("module zip is %d bytes; this modgate accepts at most %d", publishMaxZip+1, publishMaxZip)},
		{name: "fail/too-large-streamed", token: platform, mod: "corp.test/a", ver: "v1.0.0", body: bytes.Repeat([]byte("x"), 4*publishMaxZip), chunked: true,
			status: 413, reason: fmt.Sprintf("module zip is larger than %d bytes", publishMaxZip)},
		{name: "fail/delete-by-owner-not-admin", token: platform, method: http.MethodDelete, mod: "corp.test/a", ver: "v1.0.0", body: []byte(`{"reason":"x"}`),
			status: 403, reason: "team platform may not delete corp.test/a@v1.0.0: only the admin teams (platform-admins) may"},
		{name: "fail/method", token: platform, method: http.MethodPost, mod: "corp.test/a", ver: "v1.0.0", body: good("corp.test/a", "v1.0.0"),
			status: 405, reason: "method POST not allowed"},
		{name: "fail/delete-without-reason", token: env.token("root", "platform-admins"), method: http.MethodDelete, mod: "corp.test/a", ver: "v1.0.0", body: []byte(`{"reason":"  "}`),
			status: 400, reason: "delete needs a reason"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			method := tt.method
			if method == "" {
				method = http.MethodPut
			}
			size := int64(len(tt.body))
			var body io.Reader = bytes.NewReader(tt.body)
			if tt.chunked {
				body, size = struct{ io.Reader }{body}, -1
			}
			status, msg := env.do(t, method, tt.token, tt.mod, tt.ver, body, size)
			if status != tt.status || !strings.Contains(msg, tt.reason) {
				t.Errorf("%s: %d %q, want %d with %q", method, status, msg, tt.status, tt.reason)
			}
			if strings.Count(strings.TrimSpace(msg), "\n") != 0 {
				t.Errorf("reason is not one line: %q", msg)
			}
			if n := env.rows(t, tt.mod); n != 0 {
				t.Errorf("%d published_versions rows for %s, want none", n, tt.mod)
			}
			if objs := env.objects(t); len(objs) != 0 {
				t.Errorf("storage changed: %q", objs)
			}
		})
	}
}

// Twenty publishers race for one version with different bytes: one 201, the
// rest 409, and what is served is exactly the winner's zip. The same bytes again
// are an idempotent 200.
func TestConcurrentPublishThroughAPI(t *testing.T) {
	env := startPublishEnv(t)
	const mod, ver, n = "corp.test/race", "v1.0.0", 20
	tok := env.token("alice", "platform")
	zips := make([][]byte, n)
	for i := range n {
		zips[i] = moduleZip(t, mod, ver, mod, fmt.Sprintf("f%d.go", i))
	}
	statuses := make([]int, n)
	bodies := make([]string, n)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			req, _ := http.NewRequest(http.MethodPut, env.url+publish.APIPrefix+mod+"/@v/"+ver, bytes.NewReader(zips[i]))
			req.Header.Set("Authorization", "Bearer "+tok)
			resp, err := env.http.Do(req)
			if err != nil {
				bodies[i] = err.Error()
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			statuses[i], bodies[i] = resp.StatusCode, string(b)
		}()
	}
	close(start)
	wg.Wait()
	winner, conflicts := -1, 0
	for i := range n {
		switch statuses[i] {
		case http.StatusCreated:
			if winner >= 0 {
				t.Fatalf("two 201s: %d and %d", winner, i)
			}
			winner = i
		case http.StatusConflict:
			conflicts++
			if !strings.Contains(bodies[i], "is already published with different content") {
				t.Errorf("409 reason: %q", bodies[i])
			}
		default:
			t.Errorf("publisher %d: %d %q", i, statuses[i], bodies[i])
		}
	}
	if winner < 0 || conflicts != n-1 {
		t.Fatalf("winner %d, %d conflicts; want one 201 and %d 409s", winner, conflicts, n-1)
	}
	status, got := env.get(t, tok, "/"+mod+"/@v/"+ver+".zip")
	if status != 200 || !bytes.Equal(got, zips[winner]) {
		t.Fatalf("served zip: %d, %d bytes, equal to the winner's: %v", status, len(got), bytes.Equal(got, zips[winner]))
	}
	if objs := env.objects(t); len(objs) != 2 {
		t.Errorf("stored objects %q, want the winner's zip and go.mod only", objs)
	}
	status, body := env.put(t, tok, mod, ver, zips[winner])
	var res publish.Result
	if status != 200 || json.Unmarshal([]byte(body), &res) != nil || res.Created || res.Publisher != "alice" {
		t.Errorf("identical re-publish: %d %q, want 200 with created=false", status, body)
	}
}

// Published versions through the go command: listed, @latest, downloaded with
// .info Time = publish time; a deleted version is 410 Gone with its reason, leaves
// the list, and can never be published again; nothing about corp.test ever
// reaches the upstream mirror.
func TestPublishedVersionsThroughGoCommand(t *testing.T) {
	env := startPublishEnv(t)
	const mod = "corp.test/greet"
	owner := env.token("alice", "platform")
	var published = map[string]publish.Result{}
	for _, ver := range []string{"v1.0.0", "v1.1.0"} {
		status, body := env.put(t, owner, mod, ver, moduleZip(t, mod, ver, mod, "greet.go"))
		var res publish.Result
		if status != 201 || json.Unmarshal([]byte(body), &res) != nil || !res.Created {
			t.Fatalf("publish %s: %d %q", ver, status, body)
		}
		published[ver] = res
	}
	status, info := env.get(t, owner, "/"+mod+"/@v/v1.0.0.info")
	var gotInfo struct {
		Version string
		Time    time.Time
	}
	if status != 200 || json.Unmarshal(info, &gotInfo) != nil || gotInfo.Version != "v1.0.0" || !gotInfo.Time.Equal(published["v1.0.0"].PublishedAt) {
		t.Errorf(".info = %d %s, want Time %s", status, info, published["v1.0.0"].PublishedAt)
	}

	goAs := func(t *testing.T, subject, team string) *gotest.Go {
		g := gotest.New(t, "GOPROXY="+env.url, "GONOSUMDB=corp.test", "GOSUMDB=off", "SSL_CERT_FILE="+env.caFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(env.url, env.token(subject, team)))
		return g
	}
	g := goAs(t, "bob", "platform")
	out, stderr, err := g.Run("", "list", "-m", "-versions", mod)
	if err != nil || strings.TrimSpace(out) != mod+" v1.0.0 v1.1.0" {
		t.Fatalf("go list -m -versions: %q %v\n%s", out, err, stderr)
	}
	dir := g.MainModule("example.com/app")
	if _, stderr, err := g.Run(dir, "get", mod+"@latest"); err != nil {
		t.Fatalf("go get @latest: %v\n%s", err, stderr)
	}
	assertRequires(t, dir, mod+" v1.1.0")
	sum, err := os.ReadFile(filepath.Join(dir, "go.sum"))
	if err != nil || !strings.Contains(string(sum), mod+" v1.1.0 "+published["v1.1.0"].Hash+"\n") {
		t.Errorf("go.sum %q, want the published hash %s", sum, published["v1.1.0"].Hash)
	}
	// Another team may not pull corp.test (owned by platform, not shared).
	if _, stderr, err := goAs(t, "pat", "payments").Run("", "mod", "download", mod+"@v1.0.0"); err == nil || !strings.Contains(stderr, "team payments may not pull corp.test/greet@v1.0.0") {
		t.Errorf("other team: err=%v\n%s", err, stderr)
	}

	admin := env.token("root", "platform-admins")
	if status, body := env.del(t, admin, mod, "v1.1.0", "ships a debug endpoint, see SEC-42"); status != 200 {
		t.Fatalf("delete: %d %q", status, body)
	}
	_, stderr, err = goAs(t, "bob", "platform").Run("", "mod", "download", mod+"@v1.1.0")
	if err == nil || !strings.Contains(stderr, "410 Gone") || !strings.Contains(stderr, "server response: corp.test/greet@v1.1.0 was deleted by root at ") ||
		!strings.Contains(stderr, ": ships a debug endpoint, see SEC-42") {
		t.Errorf("download of a deleted version: err=%v, want 410 with the reason:\n%s", err, stderr)
	}
	out, stderr, err = goAs(t, "bob", "platform").Run("", "list", "-m", "-versions", mod)
	if err != nil || strings.TrimSpace(out) != mod+" v1.0.0" {
		t.Errorf("list after delete: %q %v\n%s", out, err, stderr)
	}
	status, latest := env.get(t, owner, "/"+mod+"/@latest")
	if status != 200 || !strings.Contains(string(latest), `"Version":"v1.0.0"`) {
		t.Errorf("@latest after delete: %d %s", status, latest)
	}
	status, body := env.put(t, owner, mod, "v1.1.0", moduleZip(t, mod, "v1.1.0", mod, "greet.go"))
	if status != 410 || !strings.Contains(body, "can never be published again: ships a debug endpoint, see SEC-42") {
		t.Errorf("re-publish after delete: %d %q, want 410 with the reason", status, body)
	}
	if n := env.rows(t, mod); n != 2 {
		t.Errorf("%d rows, want 2 (one live, one tombstone)", n)
	}
	for _, p := range env.upstream.Paths() {
		if strings.Contains(p, "corp.test") {
			t.Errorf("upstream was asked for private path %s", p)
		}
	}
}
