package e2e

import (
	"context"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/pinstore"
	"github.com/modgate/modgate/internal/testing/gittest"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// Private versions during a PostgreSQL outage, on a replica that never served
// them. Replica A serves two versions of a git module (pinning them) and one of
// another, and a version is published and deleted through it; replica B, with
// its own disk cache, only refreshes its copy of the ledger. With PostgreSQL
// stopped, the go command through B downloads the pinned versions with the
// hashes A served, lists git's tags and the live published version without the
// deleted one, gets 410 for the deleted version and a one-line 503 for a
// version nobody served; a tag moved during the outage gets the ledger's 502
// naming both hashes, counted in the metric and, once PostgreSQL is back, in
// the audit trail.
func TestServesPinnedPrivateVersionsThroughPostgresOutage(t *testing.T) {
	const (
		ledgerMod = "corp.example/payments/ledger"
		movedMod  = "corp.example/payments/moved"
	)
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	git := gittest.NewServer(t)
	repo := git.NewRepo(t, "payments/ledger.git")
	for i, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		files := map[string]string{"ledger.go": fmt.Sprintf("package ledger\n\nconst Version = %d\n", i)}
		if i == 0 {
			files["go.mod"] = "module " + ledgerMod + "\n\ngo 1.21\n"
		}
		repo.Commit(v, files)
		repo.Tag(v)
	}
	moved := git.NewRepo(t, "payments/moved.git")
	moved.Commit("v1.0.0", map[string]string{"go.mod": "module " + movedMod + "\n\ngo 1.21\n", "moved.go": "package moved\n\nconst Version = 1\n"})
	moved.Tag("v1.0.0")

	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	idp := oidctest.Start(t)
	p := newPKI(t)
	pwFile := filepath.Join(t.TempDir(), "git-token")
	writeFile(t, pwFile, []byte(gittest.Password))
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": attackPolicyData})
	cfg.Private.Routes = []config.PrivateRoute{{
		Pattern: privatePrefix, Repo: git.URL + "/{path}.git", RootDepth: 3,
		Credentials: config.GitCredentials{Username: gittest.User, PasswordFile: pwFile},
	}}
	cfg.Private.PinCopyRefresh = config.Duration(200 * time.Millisecond)
	var urls, cacheDirs [2]string
	var logs [2]*safeBuffer
	for i := range 2 {
		c := cfg
		c.Replica = fmt.Sprintf("replica-%d", i)
		c.Cache.Dir = t.TempDir()
		cacheDirs[i], logs[i] = c.Cache.Dir, &safeBuffer{}
		urls[i] = startAppLogging(t, c, logs[i])
	}
	a, b := urls[0], urls[1]
	client := clientTrusting(t, p.CAFile)
	goVia := func(url string) *gotest.Go {
		g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB="+privatePrefix, "GOFLAGS=-mod=mod", "SSL_CERT_FILE="+p.CAFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, idp.IssueToken("dev-payments", []string{"team-payments"})))
		return g
	}

	// Replica A serves (and so pins) ledger v1.0.0 and v1.1.0 and moved v1.0.0.
	pinned := map[string]string{}
	for _, q := range []string{ledgerMod + "@v1.0.0", ledgerMod + "@v1.1.0", movedMod + "@v1.0.0"} {
		pinned[q] = downloadSum(t, goVia(a), q)
	}
	// v1.4.0 is published and stays; v1.5.0 is published and deleted.
	pe := &publishEnv{url: a, cacheDir: cacheDirs[0], http: client}
	payments := idp.IssueToken("dev-payments", []string{"team-payments"})
	admin := idp.IssueToken("ann", []string{"team-platform-admins"})
	for _, v := range []string{"v1.4.0", "v1.5.0"} {
		if code, body := pe.put(t, payments, ledgerMod, v, moduleZip(t, ledgerMod, v, ledgerMod, "published.go")); code != http.StatusCreated && code != http.StatusOK {
			t.Fatalf("publish %s: %d %s", v, code, body)
		}
	}
	if code, body := pe.del(t, admin, ledgerMod, "v1.5.0", "ships a debug endpoint"); code != http.StatusOK {
		t.Fatalf("delete v1.5.0: %d %s", code, body)
	}

	// B has never served any of them; its copy of the ledger has them all.
	waitFor(t, 30*time.Second, "replica B's pin copy to hold A's pins and the tombstone", func() bool {
		c, err := pinstore.Open(filepath.Join(cacheDirs[1], ".private-pins.json"))
		if err != nil {
			return false
		}
		tomb, ok := c.Published(ledgerMod, "v1.5.0")
		return ok && tomb.Deleted() && c.Pinned(movedMod, "v1.0.0", ledger.Zip) &&
			c.Pinned(ledgerMod, "v1.1.0", ledger.Zip) && c.Pinned(ledgerMod, "v1.0.0", ledger.Mod)
	})
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Log("PostgreSQL stopped")
	// /readyz says what the copy holds (three git versions and the two
	// published ones, .mod and .zip each) and how old it is.
	if code, body := getWithToken(t, p.CAFile, b+"/readyz", ""); code != http.StatusOK || !regexp.MustCompile(`pin copy: ok \(10 pins, 2 published versions, refreshed \d+s ago\)`).MatchString(body) {
		t.Errorf("B's /readyz during the outage: %d %q, want 200 with the pin copy's size and age", code, body)
	}

	// The pinned versions, from git, with the hashes A served: through a
	// main module requiring them, as a build would.
	work := t.TempDir()
	writeFile(t, filepath.Join(work, "go.mod"), []byte("module corp.example/app\n\ngo 1.21\n\nrequire (\n\t"+ledgerMod+" v1.1.0\n)\n"))
	g := goVia(b)
	if out, stderr, err := g.Run(work, "mod", "download", "-json", ledgerMod+"@v1.0.0", ledgerMod+"@v1.1.0"); err != nil {
		t.Fatalf("go mod download of pinned versions through B during the outage: %v\n%s%s", err, out, stderr)
	} else {
		for _, d := range parseDownloads(t, out) {
			if want := pinned[d.Path+"@"+d.Version]; d.Error != "" || d.Sum != want {
				t.Errorf("%s@%s through B: error %q, sum %s; want %s as A served it", d.Path, d.Version, d.Error, d.Sum, want)
			}
		}
	}
	// The list: git's tags and the live published version, not the deleted one.
	token := idp.IssueToken("dev-payments", []string{"team-payments"})
	if code, body := getWithToken(t, p.CAFile, b+"/"+ledgerMod+"/@v/list", token); code != http.StatusOK ||
		strings.Join(strings.Fields(body), " ") != "v1.0.0 v1.1.0 v1.2.0 v1.4.0" {
		t.Errorf("@v/list through B during the outage = %d %q, want v1.0.0 v1.1.0 v1.2.0 v1.4.0", code, body)
	}
	// The published version's bytes are on A's disk, not B's: 503, not a 404
	// that would tell the go command it does not exist.
	if code, body := getWithToken(t, p.CAFile, b+"/"+ledgerMod+"/@v/v1.4.0.mod", token); code != http.StatusServiceUnavailable || !strings.Contains(body, "stored copy") {
		t.Errorf("published version stored on another replica's disk, during the outage: %d %q, want 503", code, body)
	}
	// The deleted version stays 410.
	stderr := refused(t, goVia(b), "mod", "download", ledgerMod+"@v1.5.0")
	if !strings.Contains(stderr, "410 Gone") || !strings.Contains(serverResponse(stderr), "ships a debug endpoint") {
		t.Errorf("deleted version during the outage: want 410 with the reason:\n%s", stderr)
	}
	// A version no replica served: refused with the one line saying why.
	stderr = refused(t, goVia(b), "mod", "download", ledgerMod+"@v1.2.0")
	wantLine := "cannot serve " + ledgerMod + "@v1.2.0 now: it was never served before and modgate's database is unreachable to pin it; try again when it is back"
	if !strings.Contains(stderr, "503 Service Unavailable") || serverResponse(stderr) != wantLine {
		t.Errorf("never-served version during the outage: want 503 %q:\n%s", wantLine, stderr)
	}

	// A tag moved during the outage: B fetches it for the first time and
	// refuses the new bytes, naming both hashes.
	moved.Commit("rewritten", map[string]string{"moved.go": "package moved\n\nconst Version = 666 // backdoor\n"})
	moved.Git("tag", "-f", "v1.0.0")
	stderr = refused(t, goVia(b), "mod", "download", movedMod+"@v1.0.0")
	line := serverResponse(stderr)
	if !strings.Contains(stderr, "502 Bad Gateway") || !strings.Contains(line, pinned[movedMod+"@v1.0.0"]) ||
		len(regexp.MustCompile(`h1:[A-Za-z0-9+/=]+`).FindAllString(line, -1)) < 2 {
		t.Errorf("moved tag during the outage: want a one-line 502 naming the pinned %s and the new hash:\n%s", pinned[movedMod+"@v1.0.0"], stderr)
	}
	if n := integrityMetric(t, &attackEnv{http: client}, b); n < 1 {
		t.Errorf("integrity failure metrics on B sum to %v, want at least 1", n)
	}

	// Nothing was pinned during the outage, and the refusal reaches the audit
	// trail once PostgreSQL is back.
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, dbURL)
	ctx := context.Background()
	var pins int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM private_ledger WHERE module = $1 AND version = 'v1.2.0'`, ledgerMod).Scan(&pins); err != nil || pins != 0 {
		t.Errorf("%d pins of the never-served version (%v), want 0", pins, err)
	}
	waitFor(t, 60*time.Second, "the integrity failure's audit row", func() bool {
		var n int
		err := pool.QueryRow(ctx, `SELECT count(*) FROM audit_events WHERE module = $1 AND version = 'v1.0.0' AND outcome = 'integrity_failure'`, movedMod).Scan(&n)
		return err == nil && n > 0
	})
	if out, err := exec.Command(modgateBinary(t), "private", "verify", "--database-url", dbURL, "--no-objects").CombinedOutput(); err != nil {
		t.Errorf("modgate private verify after the outage: %v\n%s", err, out)
	}
}
