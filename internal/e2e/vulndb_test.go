package e2e

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"log/slog"
	"net"
	neturl "net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/vulntest"
)

const (
	vulnPath = "mod.test/vuln"
	agplPath = "mod.test/agpl"
	advisory = "GO-2024-1234"
)

// vulnReport: every version of mod.test/vuln before v1.2.4 is affected, and
// v1.3.0 brought the bug back (no fix yet), so the upstream's latest is
// affected and the newest unaffected version is v1.2.4.
var vulnReport = vulntest.Report{
	ID: advisory, Aliases: []string{"CVE-2024-12345"}, Summary: "Parse panics on crafted input",
	Module: vulnPath, Symbols: []string{"Parse"},
	Ranges: [][2]string{{"0", "1.2.4"}, {"1.3.0", ""}},
}

func vulnModules(t *testing.T) []proxytest.Module {
	t.Helper()
	agpl, err := os.ReadFile("../license/testdata/AGPL-3.0.txt")
	if err != nil {
		t.Fatal(err)
	}
	vuln := func(v string) proxytest.Module {
		return proxytest.Module{Path: vulnPath, Version: v, Files: map[string]string{
			"go.mod":  "module " + vulnPath + "\n\ngo 1.21\n",
			"vuln.go": "package vuln\n\n// Parse parses.\nfunc Parse(s string) int { return len(s) }\n",
		}}
	}
	other := vulntest.Report{ID: "GO-2024-0002", Summary: "Unrelated", Module: "mod.test/unrelated", Ranges: [][2]string{{"0", "1.0.1"}}}
	return []proxytest.Module{
		vuln("v1.2.3"), vuln("v1.2.4"), vuln("v1.3.0"),
		{Path: agplPath, Version: "v1.0.0", Files: map[string]string{
			"go.mod": "module " + agplPath + "\n", "LICENSE": string(agpl), "a.go": "package agpl\n",
		}},
		{Path: "golang.org/x/vulndb", Version: "v0.0.0-20240601000000-0123456789ab",
			Files: vulntest.ModuleFiles("golang.org/x/vulndb", vulnReport, other)},
	}
}

const vulnPolicyData = `settings:
  auditor_teams: [security-audit]
  anonymous: deny
  vulnerabilities:
    enabled: true
    exempt:
      - advisory: GO-2024-1234
        team: payments
        reason: payments sandboxes the parser (SEC-9)
  licenses:
    enabled: true
    deny:
      web: [AGPL-3.0]
`

// A security team's day with the vulnerability database through modgate: the
// database is built from the golang.org/x/vulndb module fetched through
// modgate's own upstream chain; the real govulncheck reads it from /vulndb/ and
// finds the known vulnerability; with the rule on, the go command prints the
// advisory for an affected version and `go get m@latest` picks the fixed one;
// a license rule refuses a module whose zip carries that license; and the
// auditor sees exactly who pulled affected versions, by API and in the
// console in a real browser.
func TestVulnerabilityDatabaseThroughModgate(t *testing.T) {
	govulncheck, err := vulntest.EnsureGovulncheck(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	upstream := proxytest.NewServer(t, vulnModules(t)...)
	pool, dbURL := pgtest.NewPool(t)
	idp := oidctest.Start(t)
	p := newPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "https://" + ln.Addr().String()
	secretFile := filepath.Join(t.TempDir(), "console-secret")
	writeFile(t, secretFile, []byte("console-s3cret\n"))
	idp.RegisterWebClient("modgate-console", "console-s3cret", base+"/ui/callback")
	idp.AddUser("ann@example.com", []string{"team-security-audit"})

	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	cfg.Auth.OIDC = auth.OIDCConfig{Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()}, TeamPrefix: "team-", HTTPClient: idp.HTTPClient()}
	cfg.Console.ClientID = "modgate-console"
	cfg.Console.ClientSecretFile = secretFile
	cfg.Console.RedirectURL = base + "/ui/callback"
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": vulnPolicyData})
	cfg.VulnDB.Enabled = true // source: the golang.org/x/vulndb module, latest
	url := startAppOn(t, cfg, ln)

	token := func(subject, team string) string { return idp.IssueToken(subject, []string{"team-" + team}) }
	auditor := token("ann@example.com", "security-audit")
	goAs := func(t *testing.T, subject, team string) *gotest.Go {
		g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "GOFLAGS=-mod=mod", "SSL_CERT_FILE="+p.CAFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, token(subject, team)))
		return g
	}

	// The database loads in the background once modgate is up.
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := getWithToken(t, p.CAFile, url+"/vulndb/index/modules.json", auditor)
		if status == 200 {
			if !strings.Contains(body, `"path":"`+vulnPath+`"`) {
				t.Fatalf("modules.json lacks %s: %s", vulnPath, body)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("vulndb not loaded: %d %s", status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if status, body := getWithToken(t, p.CAFile, url+"/vulndb/index/db.json", ""); status != 401 {
		t.Errorf("/vulndb/ without credentials: %d %s, want 401", status, body)
	}

	t.Run("govulncheck-finds-the-vulnerability", func(t *testing.T) {
		g := goAs(t, "alice@example.com", "payments") // exempt: may pull the affected version
		dir := g.MainModule("example.com/app")
		writeFile(t, filepath.Join(dir, "main.go"), []byte("package main\n\nimport \"mod.test/vuln\"\n\nfunc main() { println(vuln.Parse(\"x\")) }\n"))
		if _, stderr, err := g.Run(dir, "get", vulnPath+"@v1.2.3"); err != nil {
			t.Fatalf("go get %s@v1.2.3 (exempt team): %v\n%s", vulnPath, err, stderr)
		}
		u, _ := neturl.Parse(url + "/vulndb")
		u.User = neturl.UserPassword("modgate", token("alice@example.com", "payments"))
		cmd := exec.Command(govulncheck, "-db", u.String(), "./...")
		cmd.Dir = dir
		cmd.Env = g.Env()
		out, err := cmd.CombinedOutput()
		// govulncheck exits 3 when it finds vulnerabilities.
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 3 {
			t.Fatalf("govulncheck: %v (want exit status 3)\n%s", err, out)
		}
		for _, want := range []string{"Vulnerability #1: " + advisory, "Parse panics on crafted input", "Found in: " + vulnPath + "@v1.2.3"} {
			if !strings.Contains(string(out), want) {
				t.Errorf("govulncheck output lacks %q:\n%s", want, out)
			}
		}
	})

	t.Run("affected-version-refused-with-the-advisory", func(t *testing.T) {
		g := goAs(t, "bob@example.com", "web")
		_, stderr, err := g.Run("", "mod", "download", vulnPath+"@v1.2.3")
		want := vulnPath + "@v1.2.3 is affected by " + advisory + " (CVE-2024-12345): fixed in v1.2.4"
		if err == nil || !strings.Contains(stderr, "403 Forbidden") || !strings.Contains(stderr, want) {
			t.Fatalf("go mod download of an affected version: err=%v; want %q in:\n%s", err, want, stderr)
		}
	})

	t.Run("go-get-latest-picks-the-fixed-version", func(t *testing.T) {
		g := goAs(t, "bob@example.com", "web")
		dir := g.MainModule("example.com/web")
		if _, stderr, err := g.Run(dir, "get", vulnPath+"@latest"); err != nil {
			t.Fatalf("go get %s@latest: %v\n%s", vulnPath, err, stderr)
		}
		assertRequires(t, dir, vulnPath+" v1.2.4")
		out, stderr, err := g.Run("", "list", "-m", "-versions", vulnPath)
		if err != nil || strings.TrimSpace(out) != vulnPath+" v1.2.4" {
			t.Errorf("go list -m -versions = %q (%v %s), want only v1.2.4", out, err, stderr)
		}
	})

	t.Run("license-rule-refuses-the-zip", func(t *testing.T) {
		_, stderr, err := goAs(t, "bob@example.com", "web").Run("", "mod", "download", agplPath+"@v1.0.0")
		want := "team web may not pull " + agplPath + "@v1.0.0: it is licensed under AGPL-3.0, which team web may not use"
		if err == nil || !strings.Contains(stderr, want) {
			t.Fatalf("go mod download of an AGPL module by team web: err=%v; want %q in:\n%s", err, want, stderr)
		}
		if _, stderr, err := goAs(t, "alice@example.com", "payments").Run("", "mod", "download", agplPath+"@v1.0.0"); err != nil {
			t.Errorf("team payments may use AGPL-3.0: %v\n%s", err, stderr)
		}
	})

	// carol pulled the affected version, then the fix: remediated.
	gc := goAs(t, "carol@example.com", "payments")
	for _, v := range []string{"v1.2.3", "v1.2.4"} {
		if _, stderr, err := gc.Run("", "mod", "download", vulnPath+"@"+v); err != nil {
			t.Fatalf("carol: %v\n%s", err, stderr)
		}
		time.Sleep(1100 * time.Millisecond) // distinct pull times
	}

	type exposure struct {
		Subject      string   `json:"subject"`
		Module       string   `json:"module"`
		FixedVersion string   `json:"fixed_version"`
		Teams        []string `json:"teams"`
		Versions     []string `json:"versions"`
	}
	equalExposures := func(a, b []exposure) bool {
		return slices.EqualFunc(a, b, func(x, y exposure) bool {
			return x.Subject == y.Subject && x.Module == y.Module && x.FixedVersion == y.FixedVersion &&
				slices.Equal(x.Teams, y.Teams) && slices.Equal(x.Versions, y.Versions)
		})
	}
	var got []exposure
	t.Run("audit-affected-api", func(t *testing.T) {
		want := []exposure{
			{Subject: "alice@example.com", Teams: []string{"payments"}, Module: vulnPath, Versions: []string{"v1.2.3"}},
			{Subject: "carol@example.com", Teams: []string{"payments"}, Module: vulnPath, Versions: []string{"v1.2.3"}, FixedVersion: "v1.2.4"},
		}
		deadline := time.Now().Add(30 * time.Second)
		for {
			status, body := getWithToken(t, p.CAFile, url+"/api/v1/audit/affected?id="+advisory, auditor)
			if status != 200 {
				t.Fatalf("affected API: %d %s", status, body)
			}
			var resp struct{ Exposures []exposure }
			if err := json.Unmarshal([]byte(body), &resp); err != nil {
				t.Fatal(err)
			}
			got = resp.Exposures
			if equalExposures(got, want) {
				break
			}
			if time.Now().After(deadline) {
				rows, _, _ := audit.Query(context.Background(), pool, audit.Filter{Module: vulnPath, Limit: 200})
				for _, r := range rows {
					t.Logf("audit row: %s %s %s %s %s %s", r.Time.Format(time.RFC3339Nano), r.Subject, r.Action, r.Version, r.Outcome, r.Teams)
				}
				t.Fatalf("affected = %+v, want exactly %+v", got, want)
			}
			time.Sleep(300 * time.Millisecond)
		}
		status, body := getWithToken(t, p.CAFile, url+"/api/v1/audit/affected?id="+advisory+"&format=csv", auditor)
		recs, err := csv.NewReader(strings.NewReader(body)).ReadAll()
		if status != 200 || err != nil || len(recs) != 3 || recs[1][0] != "alice@example.com" || recs[2][6] != "v1.2.4" {
			t.Errorf("CSV export: %d %v %q", status, err, recs)
		}
		if status, body := getWithToken(t, p.CAFile, url+"/api/v1/audit/affected?id="+advisory, token("bob@example.com", "web")); status != 403 {
			t.Errorf("non-auditor asked: %d %s, want 403", status, body)
		}
		if status, _ := getWithToken(t, p.CAFile, url+"/api/v1/audit/affected?id=GO-2099-0000", auditor); status != 404 {
			t.Errorf("unknown advisory: %d, want 404", status)
		}
	})

	t.Run("console-page-in-browser", func(t *testing.T) {
		ctx := newBrowser(t)
		do(t, ctx, chromedp.Navigate(url+"/ui/affected"), chromedp.WaitVisible(chromedp.ID("signin")),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("username")),
			chromedp.SendKeys(chromedp.ID("username"), "ann@example.com"),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("whoami")),
			chromedp.SendKeys(chromedp.ID("id"), advisory),
			chromedp.Submit(chromedp.ID("id")),
			chromedp.WaitVisible(chromedp.ID("exposures")),
		)
		screenshot(t, ctx, "vulndb-affected")
		var rows []string
		for _, r := range tableRows(t, ctx, "exposures") {
			if len(r) != 7 {
				t.Fatalf("row %q: want 7 cells", r)
			}
			rows = append(rows, strings.Join([]string{r[0], r[1], r[2], r[3], strings.Fields(r[6])[0]}, " "))
		}
		want := []string{
			"alice@example.com payments " + vulnPath + " v1.2.3 not",
			"carol@example.com payments " + vulnPath + " v1.2.3 v1.2.4",
		}
		if !slices.Equal(rows, want) {
			t.Errorf("console rows:\n%s\nwant:\n%s", strings.Join(rows, "\n"), strings.Join(want, "\n"))
		}
		summary := value(t, ctx, chromedp.Text(chromedp.ID("summary")))
		if !strings.Contains(summary, "2 callers") || !strings.Contains(summary, "1 have not") {
			t.Errorf("summary = %q", summary)
		}
	})
}

// vulndb.source url: a second modgate copies the first one's /vulndb/ through
// the mirror connection settings (the first's private CA, Basic credentials
// from a password file) and serves the same database; when the first goes
// away, the second keeps serving its last good copy.
func TestVulnDBFromUpstreamURL(t *testing.T) {
	upstream := proxytest.NewServer(t, vulnModules(t)...)
	idp := oidctest.Start(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Auth.OIDC = auth.OIDCConfig{Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()}, TeamPrefix: "team-", HTTPClient: idp.HTTPClient()}
	cfg.VulnDB.Enabled = true
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	first := startAppUntil(t, ctx, cfg)
	tok := idp.IssueToken("mirror@example.com", []string{"team-platform"})
	waitVulnDB(t, p.CAFile, first, tok)

	pw := filepath.Join(t.TempDir(), "password")
	writeFile(t, pw, []byte(tok+"\n"))
	cfg2 := tlsConfigFor(p, upstream.URL)
	cfg2.Auth.OIDC = cfg.Auth.OIDC
	cfg2.VulnDB.Enabled = true
	cfg2.VulnDB.Source = "url"
	cfg2.VulnDB.Refresh = config.Duration(time.Second)
	cfg2.VulnDB.Upstream = config.UpstreamMirror{URL: first + "/vulndb", CAFile: p.CAFile, Username: "modgate", PasswordFile: pw}
	second := startApp(t, cfg2)
	waitVulnDB(t, p.CAFile, second, tok)
	for _, name := range []string{"index/modules.json", "ID/" + advisory + ".json"} {
		_, a := getWithToken(t, p.CAFile, first+"/vulndb/"+name, tok)
		_, b := getWithToken(t, p.CAFile, second+"/vulndb/"+name, tok)
		if a != b {
			t.Errorf("%s differs:\nfirst:  %s\nsecond: %s", name, a, b)
		}
	}
	stop() // the upstream database goes away
	time.Sleep(2500 * time.Millisecond)
	if status, body := getWithToken(t, p.CAFile, second+"/vulndb/ID/"+advisory+".json", tok); status != 200 {
		t.Errorf("with its source down: %d %s, want the last good copy", status, body)
	}
	if status, body := getWithToken(t, p.CAFile, second+"/readyz", ""); !strings.Contains(body, "vulndb: ok") || !strings.Contains(body, "last refresh failed") {
		t.Errorf("/readyz (%d) does not report the failing source:\n%s", status, body)
	}
}

func waitVulnDB(t *testing.T, caFile, url, token string) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for {
		status, body := getWithToken(t, caFile, url+"/vulndb/index/db.json", token)
		if status == 200 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s/vulndb not loaded: %d %s", url, status, body)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// startAppUntil is startApp whose server stops when ctx ends.
func startAppUntil(t *testing.T, ctx context.Context, cfg config.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cfg.Cache.Dir = t.TempDir()
	a, err := app.New(ctx, cfg, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() { <-done; a.Close() })
	return "https://" + ln.Addr().String()
}
