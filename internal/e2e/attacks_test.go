package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gittest"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// The attacks of issue 15, tried as an attacker would, through the real go
// command against a full modgate (internal/app, TLS, OIDC, PostgreSQL, the
// shipped Rego policy): each must now fail to get through.

const attackPolicyData = `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
owners:
  corp.example:
    team: platform
  corp.example/payments:
    team: payments
denylist:
  github.com/sirupsen/logrus:
    reason: compromised maintainer account, see SEC-2001
`

const ledgerPath = "corp.example/payments/ledger"

// attackEnv is modgate with corp.example routed to a git server that resolves
// repository paths case-insensitively (as hosting services do), the public
// fixture as its upstream, and the policy above.
type attackEnv struct {
	cfg      config.Config
	url      string
	caFile   string
	pool     *pgxpool.Pool
	idp      *oidctest.Provider
	git      *gittest.Server
	repo     *gittest.Repo // payments/ledger.git: corp.example/payments/ledger
	upstream *proxytest.Server
	http     *http.Client
}

func startAttackEnv(t *testing.T, public ...proxytest.Module) *attackEnv {
	t.Helper()
	e := &attackEnv{git: gittest.NewServer(t, gittest.CaseInsensitive())}
	e.repo = e.git.NewRepo(t, "payments/ledger.git")
	e.repo.Commit("v1.0.0", map[string]string{"go.mod": "module " + ledgerPath + "\n\ngo 1.21\n", "ledger.go": "package ledger\n\nconst Version = 1\n"})
	e.repo.Tag("v1.0.0")
	e.repo.Commit("v1.1.0", map[string]string{"ledger.go": "package ledger\n\nconst Version = 11\n"})
	e.repo.Tag("v1.1.0")

	e.upstream = proxytest.NewServer(t, append(proxytest.StandardModules(), public...)...)
	e.idp = oidctest.Start(t)
	var dbURL string
	e.pool, dbURL = pgtest.NewPool(t)
	p := newPKI(t)
	e.caFile = p.CAFile
	e.http = clientTrusting(t, p.CAFile)
	pwFile := filepath.Join(t.TempDir(), "git-token")
	writeFile(t, pwFile, []byte(gittest.Password))

	cfg := tlsConfigFor(p, e.upstream.URL)
	cfg.Cache.Dir = t.TempDir()
	cfg.Database.URL = dbURL
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: e.idp.Issuer(), Audiences: []string{e.idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: e.idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": attackPolicyData})
	cfg.Private.Routes = []config.PrivateRoute{{
		Pattern: privatePrefix, Repo: e.git.URL + "/{path}.git", RootDepth: 3,
		Credentials: config.GitCredentials{Username: gittest.User, PasswordFile: pwFile},
	}}
	e.cfg = cfg
	e.url = startApp(t, cfg)
	return e
}

// replica starts another modgate sharing the database, with its own cache: a
// second replica, or this one after its local cache was lost.
func (e *attackEnv) replica(t *testing.T) string {
	t.Helper()
	cfg := e.cfg
	cfg.Cache.Dir = t.TempDir()
	return startApp(t, cfg)
}

// goAs is a developer of team on a fresh machine (empty module cache) using the
// modgate at url.
func (e *attackEnv) goAs(t *testing.T, url, team string) *gotest.Go {
	t.Helper()
	g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB="+privatePrefix, "SSL_CERT_FILE="+e.caFile)
	writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, e.idp.IssueToken("dev-"+team, []string{"team-" + team})))
	return g
}

// downloadSum runs `go mod download -json mod@ver` and returns the zip's h1: sum
// and the extracted module's directory.
func downloadSum(t *testing.T, g *gotest.Go, query string) string {
	t.Helper()
	sum, _ := downloadDir(t, g, query)
	return sum
}

func downloadDir(t *testing.T, g *gotest.Go, query string) (sum, dir string) {
	t.Helper()
	out, stderr, err := g.Run("", "mod", "download", "-json", query)
	if err != nil {
		t.Fatalf("go mod download %s: %v\n%s%s", query, err, out, stderr)
	}
	var d struct{ Sum, Dir string }
	if err := json.Unmarshal([]byte(out), &d); err != nil || !strings.HasPrefix(d.Sum, "h1:") {
		t.Fatalf("go mod download -json %s: %v\n%s", query, err, out)
	}
	return d.Sum, d.Dir
}

// refused runs `go mod download query` and returns the go command's error output,
// failing the test if the download succeeded.
func refused(t *testing.T, g *gotest.Go, args ...string) string {
	t.Helper()
	out, stderr, err := g.Run("", args...)
	if err == nil {
		t.Fatalf("go %s succeeded, want a refusal:\n%s", strings.Join(args, " "), out)
	}
	return stderr
}

// serverResponse returns the text the go command printed after "server response:"
// (modgate's one-line reason).
func serverResponse(stderr string) string {
	_, after, ok := strings.Cut(stderr, "server response: ")
	if !ok {
		return ""
	}
	line, _, _ := strings.Cut(after, "\n")
	return line
}

// put publishes zipBytes as mod@ver as team and returns the status and body.
func (e *attackEnv) put(t *testing.T, team, mod, ver string, zipBytes []byte) (int, string) {
	t.Helper()
	env := &publishEnv{url: e.url, idp: e.idp, http: e.http}
	return env.put(t, env.token("dev-"+team, team), mod, ver, zipBytes)
}

// cachedObjects lists the cache's stored objects whose key contains substr.
func cachedObjects(t *testing.T, dir, substr string) []string {
	t.Helper()
	var out []string
	filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.Contains(filepath.ToSlash(p), substr) {
			out = append(out, p)
		}
		return nil
	})
	return out
}

// (a) Case variant beats ownership. Team platform gets 403 for payments' module
// and must get 403 (or the declared-path refusal) for corp.example/Payments/ledger,
// which the case-insensitive git server resolves to payments' repository; the
// owner asking for the variant gets the declared-path refusal; nothing of the
// variant is cached.
func TestAttackCaseVariantOwnership(t *testing.T) {
	e := startAttackEnv(t)
	platform := e.goAs(t, e.url, "platform")
	variant := "corp.example/Payments/ledger"

	stderr := refused(t, platform, "mod", "download", ledgerPath+"@v1.1.0")
	if !strings.Contains(stderr, "403 Forbidden") || serverResponse(stderr) != "team platform may not pull "+ledgerPath+"@v1.1.0: owned by team payments" {
		t.Fatalf("platform pulling %s: want 403 owned by team payments:\n%s", ledgerPath, stderr)
	}

	denied := func(stderr string) bool {
		return strings.Contains(stderr, "403 Forbidden") && strings.Contains(serverResponse(stderr), "owned by team payments") ||
			strings.Contains(serverResponse(stderr), "go.mod declares module path "+ledgerPath)
	}
	for _, args := range [][]string{
		{"mod", "download", variant + "@v1.1.0"},
		{"mod", "download", variant + "@v1.0.0"},
		{"mod", "download", variant + "@latest"},
		{"list", "-m", "-versions", variant},
	} {
		if stderr := refused(t, platform, args...); !denied(stderr) {
			t.Errorf("platform: go %s: want 403 or the declared-path refusal:\n%s", strings.Join(args, " "), stderr)
		}
	}

	// The owner is not refused by policy, but the variant is not a module.
	payments := e.goAs(t, e.url, "payments")
	stderr = refused(t, payments, "mod", "download", variant+"@v1.1.0")
	want := variant + "@v1.1.0: go.mod declares module path " + ledgerPath + ", not " + variant + ": refusing a module that does not declare exactly the requested path"
	if serverResponse(stderr) != want {
		t.Errorf("payments pulling the variant: want %q in:\n%s", want, stderr)
	}
	if objs := cachedObjects(t, e.cfg.Cache.Dir, "!payments"); len(objs) > 0 {
		t.Errorf("objects of the variant were cached: %q", objs)
	}
	// And the real module still works for its owner.
	downloadSum(t, payments, ledgerPath+"@v1.1.0")
}

// (b) Case variant beats the deny list: with github.com/sirupsen/logrus
// deny-listed, github.com/Sirupsen/logrus (a real, different module to the go
// command and the checksum database) is refused too, and the upstream is never
// asked for it.
func TestAttackCaseVariantDenyList(t *testing.T) {
	mod := func(path string) proxytest.Module {
		return proxytest.Module{Path: path, Version: "v1.0.0", Time: time.Date(2017, 1, 1, 0, 0, 0, 0, time.UTC),
			Files: map[string]string{"go.mod": "module " + path + "\n", "logrus.go": "package logrus\n"}}
	}
	e := startAttackEnv(t, mod("github.com/sirupsen/logrus"), mod("github.com/Sirupsen/logrus"))
	g := e.goAs(t, e.url, "platform")
	for _, path := range []string{"github.com/sirupsen/logrus", "github.com/Sirupsen/logrus"} {
		stderr := refused(t, g, "mod", "download", path+"@v1.0.0")
		want := "team platform may not pull " + path + "@v1.0.0: github.com/sirupsen/logrus is deny-listed: compromised maintainer account, see SEC-2001"
		if !strings.Contains(stderr, "403 Forbidden") || serverResponse(stderr) != want {
			t.Errorf("pulling %s: want 403 %q in:\n%s", path, want, stderr)
		}
	}
	// The protocol paths themselves, as an attacker would type them.
	for _, p := range []string{"/github.com/!sirupsen/logrus/@v/v1.0.0.zip", "/github.com/!sirupsen/logrus/@v/list", "/github.com/!sirupsen/logrus/@latest"} {
		req, _ := http.NewRequest(http.MethodGet, e.url+p, nil)
		req.Header.Set("Authorization", "Bearer "+e.idp.IssueToken("dev-platform", []string{"team-platform"}))
		resp, err := e.http.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusForbidden || !strings.Contains(string(body), "github.com/sirupsen/logrus is deny-listed") {
			t.Errorf("GET %s = %d %q, want 403 naming the deny-list entry", p, resp.StatusCode, body)
		}
	}
	// A variant that exists nowhere may answer 404 (the go command's prefix
	// probing relies on it), but never with anything from the module.
	if stderr := refused(t, g, "mod", "download", "github.com/SIRUPSEN/LOGRUS@v1.0.0"); !strings.Contains(stderr, "403 Forbidden") && !strings.Contains(stderr, "404 Not Found") {
		t.Errorf("pulling github.com/SIRUPSEN/LOGRUS: want 403 or 404:\n%s", stderr)
	}
	// No byte of a deny-listed module was fetched: at most its version list was
	// asked for, to tell an absent module (404) from a denied one.
	for _, path := range e.upstream.Paths() {
		if strings.Contains(strings.ToLower(path), "sirupsen") && !strings.HasSuffix(path, "/@v/list") {
			t.Errorf("the upstream was asked for %s", path)
		}
	}
	// Control: a module nobody denied is served.
	downloadSum(t, g, proxytest.HelloPath+"@v1.0.0")
}

// (c) Publish over a git version already served: 409 naming the recorded
// source; pulls keep the git bytes; list and @latest keep git's versions.
func TestAttackPublishOverServedGitVersion(t *testing.T) {
	e := startAttackEnv(t)
	gitSum := downloadSum(t, e.goAs(t, e.url, "payments"), ledgerPath+"@v1.0.0")

	status, body := e.put(t, "payments", ledgerPath, "v1.0.0", moduleZip(t, ledgerPath, "v1.0.0", ledgerPath, "evil.go"))
	if status != http.StatusConflict || !strings.Contains(body, "git") || strings.Count(strings.TrimSpace(body), "\n") > 0 {
		t.Fatalf("publish over a served git version = %d %q, want 409 naming the recorded source (git) in one line", status, body)
	}
	if got := downloadSum(t, e.goAs(t, e.url, "payments"), ledgerPath+"@v1.0.0"); got != gitSum {
		t.Errorf("after the publish, a fresh machine gets %s, want git's %s", got, gitSum)
	}
	out, stderr, err := e.goAs(t, e.url, "payments").Run("", "list", "-m", "-versions", ledgerPath)
	if err != nil || strings.TrimSpace(out) != ledgerPath+" v1.0.0 v1.1.0" {
		t.Errorf("go list -m -versions = %q, %v\n%s; want git's v1.0.0 v1.1.0", out, err, stderr)
	}
	out, stderr, err = e.goAs(t, e.url, "payments").Run("", "list", "-m", ledgerPath+"@latest")
	if err != nil || strings.TrimSpace(out) != ledgerPath+" v1.1.0" {
		t.Errorf("go list -m @latest = %q, %v\n%s; want v1.1.0", out, err, stderr)
	}
}

// (d) A force-pushed / moved git tag: a replica that fetches the version again
// (its cache lost, or a new replica) refuses the new bytes with a one-line 502
// naming both hashes, records an integrity_failure audit row and counts it; the
// replica that has the recorded bytes keeps serving them to a fresh machine.
func TestAttackMovedGitTag(t *testing.T) {
	e := startAttackEnv(t)
	pinned := downloadSum(t, e.goAs(t, e.url, "payments"), ledgerPath+"@v1.0.0")

	// Someone moves v1.0.0 to other code.
	e.repo.Commit("rewritten", map[string]string{"ledger.go": "package ledger\n\nconst Version = 666 // backdoor\n"})
	e.repo.Git("tag", "-f", "v1.0.0")

	other := e.replica(t)
	stderr := refused(t, e.goAs(t, other, "payments"), "mod", "download", ledgerPath+"@v1.0.0")
	line := serverResponse(stderr)
	if !strings.Contains(stderr, "502 Bad Gateway") || !strings.Contains(line, pinned) ||
		len(regexp.MustCompile(`h1:[A-Za-z0-9+/=]+`).FindAllString(line, -1)) < 2 || !strings.Contains(line, ledgerPath+"@v1.0.0") {
		t.Fatalf("moved tag: want a one-line 502 naming the pinned %s and the new hash:\n%s", pinned, stderr)
	}

	// The audit row and the metric.
	deadline := time.Now().Add(20 * time.Second)
	for {
		var n int
		err := e.pool.QueryRow(context.Background(),
			`SELECT count(*) FROM audit_events WHERE module = $1 AND version = 'v1.0.0' AND outcome = 'integrity_failure'`, ledgerPath).Scan(&n)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no integrity_failure audit row for the moved tag")
		}
		time.Sleep(100 * time.Millisecond)
	}
	if n := integrityMetric(t, e, other); n < 1 {
		t.Errorf("integrity failure metrics on the refusing replica sum to %v, want at least 1", n)
	}

	// The recorded bytes are still served, from the cache, to a fresh machine.
	if got := downloadSum(t, e.goAs(t, e.url, "payments"), ledgerPath+"@v1.0.0"); got != pinned {
		t.Errorf("after the tag moved, a fresh machine gets %s, want the pinned %s", got, pinned)
	}
}

// integrityMetric sums the values of every modgate metric with "integrity" in its
// name on the modgate at url.
func integrityMetric(t *testing.T, e *attackEnv, url string) float64 {
	t.Helper()
	resp, err := e.http.Get(url + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var sum float64
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		l := sc.Text()
		if strings.HasPrefix(l, "#") || !strings.HasPrefix(l, "modgate_") || !strings.Contains(l[:strings.IndexAny(l+" ", "{ ")], "integrity") {
			continue
		}
		f := strings.Fields(l)
		if v, err := strconv.ParseFloat(f[len(f)-1], 64); err == nil {
			sum += v
		}
	}
	return sum
}

// (e) A version that exists as a git tag but was never served cannot be
// published.
func TestAttackPublishOverUnservedGitTag(t *testing.T) {
	e := startAttackEnv(t)
	e.repo.Commit("v1.2.0", map[string]string{"ledger.go": "package ledger\n\nconst Version = 12\n"})
	e.repo.Tag("v1.2.0")

	status, body := e.put(t, "payments", ledgerPath, "v1.2.0", moduleZip(t, ledgerPath, "v1.2.0", ledgerPath, "evil.go"))
	if status != http.StatusConflict || strings.TrimSpace(body) == "" {
		t.Fatalf("publish of an unserved git tag = %d %q, want 409 with a reason", status, body)
	}
	// The git bytes are what a developer gets.
	_, dir := downloadDir(t, e.goAs(t, e.url, "payments"), ledgerPath+"@v1.2.0")
	if src, err := os.ReadFile(filepath.Join(dir, "ledger.go")); err != nil || !strings.Contains(string(src), "Version = 12") {
		t.Errorf("v1.2.0 is not git's: ledger.go = %q, %v", src, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "evil.go")); err == nil {
		t.Error("v1.2.0 contains the refused publish's evil.go")
	}
	// A version git does not have may still be published by the owner.
	if status, body := e.put(t, "payments", ledgerPath, "v1.3.0", moduleZip(t, ledgerPath, "v1.3.0", ledgerPath, "new.go")); status != http.StatusCreated {
		t.Errorf("publish of a new version = %d %q, want 201", status, body)
	}
}

// `modgate private verify` after real traffic: the pins a pull made check out
// against the cache; a cached copy altered on disk and a pin altered in the
// database are each named on a line of their own, with a non-zero exit.
func TestPrivateVerifyCommand(t *testing.T) {
	e := startAttackEnv(t)
	downloadSum(t, e.goAs(t, e.url, "payments"), ledgerPath+"@v1.0.0")
	verify := func() (string, error) {
		cmd := exec.Command(modgateBinary(t), "private", "verify", "--database-url", e.cfg.Database.URL, "--cache-dir", e.cfg.Cache.Dir)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	if out, err := verify(); err != nil || !strings.Contains(out, "ok: 2 pins, chain intact to seq 2, 2 stored copies match their pins") {
		t.Fatalf("private verify after a pull: %v\n%s", err, out)
	}

	zips := cachedObjects(t, e.cfg.Cache.Dir, "private/corp.example/payments/ledger/@v/v1.0.0.zip")
	if len(zips) != 1 {
		t.Fatalf("cached zips: %q", zips)
	}
	writeFile(t, zips[0], moduleZip(t, ledgerPath, "v1.0.0", ledgerPath, "evil.go"))
	if _, err := e.pool.Exec(context.Background(), `UPDATE private_ledger SET source = 'published' WHERE file = 'mod'`); err != nil {
		t.Fatal(err)
	}
	out, err := verify()
	if err == nil {
		t.Fatalf("private verify passed after tampering:\n%s", out)
	}
	for _, want := range []string{
		"seq 1 " + ledgerPath + "@v1.0.0 mod: modified: content does not match its hash",
		"seq 2 " + ledgerPath + "@v1.0.0 zip: object: stored copy private/corp.example/payments/ledger/@v/v1.0.0.zip hashes to h1:",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("private verify output lacks %q:\n%s", want, out)
		}
	}
}
