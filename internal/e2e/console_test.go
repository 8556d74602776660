package e2e

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// screenshotDir collects the console's pages as CI artifacts (gitignored).
const screenshotDir = "../../tmp/screenshots"

// newBrowser starts a headless Chromium with a fresh profile. It ignores
// certificate errors because modgate and the test IdP serve certificates from
// throwaway test CAs the browser cannot be told about without an NSS database;
// the test talks only to loopback.
func newBrowser(t *testing.T) context.Context {
	t.Helper()
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath("/usr/bin/chromium"),
		chromedp.Flag("headless", true),
		chromedp.Flag("no-sandbox", true), // we run as root
		chromedp.Flag("disable-gpu", true),
		chromedp.Flag("disable-quic", true),
		chromedp.Flag("no-first-run", true),
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		chromedp.Flag("disable-sync", true),
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.UserDataDir(t.TempDir()),
		chromedp.WindowSize(1366, 900), // a laptop screen
	}
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancel := chromedp.NewContext(actx)
	ctx, cancelTimeout := context.WithTimeout(ctx, 3*time.Minute)
	t.Cleanup(func() { cancelTimeout(); cancel(); cancelAlloc() })
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("starting chromium: %v", err)
	}
	return ctx
}

// do runs browser steps, failing the test on the first error.
func do(t *testing.T, ctx context.Context, steps ...chromedp.Action[chromedp.Void]) {
	t.Helper()
	sctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := chromedp.Do(sctx, steps...); err != nil {
		// Show what the browser shows: the page that lacked the awaited element.
		name := "failed-" + strings.NewReplacer("/", "-", " ", "-").Replace(t.Name())
		screenshot(t, ctx, name)
		loc, _ := chromedp.Run(ctx, chromedp.Location())
		t.Fatalf("%v (at %s; see %s/%s.png)", err, loc, screenshotDir, name)
	}
}

// value runs one browser action and returns its value.
func value[T any](t *testing.T, ctx context.Context, a chromedp.Action[T]) T {
	t.Helper()
	v, err := chromedp.Run(ctx, a)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	png := value(t, ctx, chromedp.FullScreenshot(100)) // 100: PNG
	if err := os.MkdirAll(screenshotDir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(screenshotDir, name+".png"), png, 0o644); err != nil {
		t.Fatal(err)
	}
}

// tableRows returns the text of every body cell of the table with the given id.
func tableRows(t *testing.T, ctx context.Context, id string) [][]string {
	t.Helper()
	js := fmt.Sprintf(`Array.from(document.querySelectorAll('#%s tbody tr')).map(tr => Array.from(tr.cells).map(td => td.innerText.trim()))`, id)
	return value(t, ctx, chromedp.Evaluate[[][]string](js))
}

// An auditor's session in a real browser: sign in through the IdP, filter the
// pull history to one module, export it as CSV (identical to the CLI's), look at
// the module, subject, policy and health pages, and ask the policy a what-if.
func TestConsoleInBrowser(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
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
	idp.AddUser("dave@example.com", []string{"team-checkout"})

	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Cache.Dir = t.TempDir() // a cold cache: the health page shows the fetches
	cfg.Database.URL = dbURL
	// The IdP's CA through auth.oidc.ca_file, as a deployment would: the
	// console's code exchange and ID-token check trust it, nothing else does.
	cfg.Auth.OIDC = auth.OIDCConfig{Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()}, TeamPrefix: "team-", CAFile: idp.CAFile(t)}
	cfg.Console.ClientID = "modgate-console"
	cfg.Console.ClientSecretFile = secretFile
	cfg.Console.RedirectURL = base + "/ui/callback"
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": `settings:
  auditor_teams: [security-audit]
owners:
  mod.test/hello/v2:
    team: payments
`})
	url := startAppOn(t, cfg, ln)

	// A developer's pulls, one of them refused, fill the audit trail.
	g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
	writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, idp.IssueToken("dave@example.com", []string{"team-checkout"})))
	for _, m := range []string{proxytest.HelloPath + "@v1.0.0", proxytest.LegacyPath + "@v1.0.0"} {
		if _, stderr, err := g.Run("", "mod", "download", m); err != nil {
			t.Fatalf("download %s: %v\n%s", m, err, stderr)
		}
	}
	g.Run("", "mod", "download", proxytest.HelloV2Path+"@v2.0.0")
	helloRows := waitRows(t, pool, audit.Filter{Module: proxytest.HelloPath}, 3)
	waitRows(t, pool, audit.Filter{Module: proxytest.HelloV2Path}, 1)

	ctx := newBrowser(t)

	t.Run("sign-in", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(url+"/ui/events"), chromedp.WaitVisible(chromedp.ID("signin")))
		if loc := value(t, ctx, chromedp.Location()); !strings.Contains(loc, "/ui/signin?next=") {
			t.Fatalf("signed-out visit landed on %s, want the sign-in page", loc)
		}
		screenshot(t, ctx, "1-signin")
		do(t, ctx,
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("username")), // the IdP's form
			chromedp.SendKeys(chromedp.ID("username"), "ann@example.com"),
			chromedp.Click(chromedp.ID("signin")),
			chromedp.WaitVisible(chromedp.ID("whoami")),
		)
		who := value(t, ctx, chromedp.Text(chromedp.ID("whoami")))
		loc := value(t, ctx, chromedp.Location())
		if who != "ann@example.com" || !strings.HasPrefix(loc, url+"/ui/events") {
			t.Fatalf("after sign-in: %q at %s", who, loc)
		}
	})

	t.Run("filter-one-module", func(t *testing.T) {
		do(t, ctx,
			chromedp.SendKeys(chromedp.ID("f-module"), proxytest.HelloPath),
			chromedp.Click(chromedp.ID("search")),
			// Only the results page has the filter filled in from its URL.
			chromedp.WaitVisible(chromedp.CSS(`#f-module[value="`+proxytest.HelloPath+`"]`)),
			chromedp.WaitVisible(chromedp.ID("export")),
		)
		var got, want []string
		for _, r := range tableRows(t, ctx, "events") {
			if len(r) != 10 {
				t.Fatalf("row %q: want 10 cells", r)
			}
			got = append(got, strings.Join([]string{r[1], r[3], r[4], r[5], r[6], r[7]}, " "))
		}
		for _, r := range helloRows {
			want = append(want, fmt.Sprintf("%s %s %s %s %s %d", r.Subject, r.Action, r.Module, r.Version, r.Outcome, r.Status))
		}
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("filtered rows:\n%s\nwant (from the audit trail, same order):\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		slices.Sort(got)
		h := proxytest.HelloPath
		exact := []string{
			"dave@example.com info " + h + " v1.0.0 served 200",
			"dave@example.com mod " + h + " v1.0.0 served 200",
			"dave@example.com zip " + h + " v1.0.0 served 200",
		}
		if strings.Join(got, "\n") != strings.Join(exact, "\n") {
			t.Errorf("filtered rows:\n%s\nwant exactly:\n%s", strings.Join(got, "\n"), strings.Join(exact, "\n"))
		}
		screenshot(t, ctx, "2-events-filtered")
	})

	t.Run("keyset-paging", func(t *testing.T) {
		cells := func() []string {
			var out []string
			for _, r := range tableRows(t, ctx, "events") {
				out = append(out, r[3]+" "+r[5])
			}
			return out
		}
		var want []string
		for _, r := range helloRows {
			want = append(want, string(r.Action)+" "+r.Version)
		}
		do(t, ctx, chromedp.Navigate(url+"/ui/events?limit=2&module="+proxytest.HelloPath), chromedp.WaitVisible(chromedp.ID("next")))
		if got := cells(); !slices.Equal(got, want[:2]) {
			t.Errorf("page 1: %q, want %q", got, want[:2])
		}
		do(t, ctx, chromedp.Click(chromedp.ID("next")), chromedp.WaitVisible(chromedp.ID("prev")))
		if got := cells(); !slices.Equal(got, want[2:]) {
			t.Errorf("page 2: %q, want %q", got, want[2:])
		}
		if n := value(t, ctx, chromedp.Evaluate[int](`document.querySelectorAll('#next').length`)); n != 0 {
			t.Error("the last page links to a next page")
		}
		do(t, ctx, chromedp.Click(chromedp.ID("prev")), chromedp.WaitVisible(chromedp.ID("next")))
		if got := cells(); !slices.Equal(got, want[:2]) {
			t.Errorf("back on page 1: %q, want %q", got, want[:2])
		}
	})

	t.Run("export-csv-matches-cli", func(t *testing.T) {
		dir := t.TempDir()
		progress := chromedp.Events(ctx, browser.DownloadProgress)
		do(t, ctx,
			chromedp.Func(func(ctx context.Context, _ *chromedp.Target) error {
				events := true
				_, err := chromedp.Call(ctx, browser.SetDownloadBehavior, browser.SetDownloadBehaviorParams{
					Behavior:      browser.SetDownloadBehaviorBehaviorAllowAndName,
					DownloadPath:  dir,
					EventsEnabled: &events,
				})
				return err
			}),
			chromedp.Click(chromedp.ID("export")),
		)
		var guid string
		for ev, err := range progress {
			if err != nil {
				t.Fatalf("waiting for the download: %v", err)
			}
			if ev.State == browser.DownloadProgressStateCompleted {
				guid = ev.GUID
				break
			}
		}
		got, err := os.ReadFile(filepath.Join(dir, guid))
		if err != nil {
			t.Fatal(err)
		}
		cmd := exec.Command(modgateBinary(t), "audit", "query", "--module", proxytest.HelloPath, "--format", "csv", "--all", "--database-url", dbURL)
		want, err := cmd.Output()
		if err != nil {
			t.Fatalf("modgate audit query: %v", err)
		}
		if string(got) != string(want) {
			t.Errorf("console CSV:\n%s\nmodgate audit query --format csv:\n%s", got, want)
		}
		if n := strings.Count(string(got), "\n"); n != 4 {
			t.Errorf("CSV has %d lines, want a header and 3 rows", n)
		}
	})

	t.Run("module-page", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(url+"/ui/module?path="+proxytest.HelloPath), chromedp.WaitVisible(chromedp.ID("versions")))
		v := tableRows(t, ctx, "versions")
		if len(v) != 1 || v[0][0] != "v1.0.0" || v[0][4] != "3" || v[0][5] != "1" {
			t.Errorf("versions seen: %q, want v1.0.0 with 3 pulls by 1 caller", v)
		}
		if pulls := tableRows(t, ctx, "pulls"); len(pulls) != 3 || pulls[0][1] != "dave@example.com" {
			t.Errorf("pulls: %q", pulls)
		}
		screenshot(t, ctx, "3-module")
	})

	t.Run("subject-page", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(url+"/ui/subject?name=dave@example.com"), chromedp.WaitVisible(chromedp.ID("activity")))
		rows := tableRows(t, ctx, "activity")
		var denied int
		for _, r := range rows {
			if r[4] == "denied" {
				denied++
			}
		}
		if len(rows) < 7 || denied == 0 {
			t.Errorf("activity: %d rows, %d denied; want the 6 pulls and the refusal", len(rows), denied)
		}
		screenshot(t, ctx, "4-subject")
	})

	t.Run("what-if", func(t *testing.T) {
		tests := []struct {
			name, teams, module, version, verdict, reason string
		}{
			{name: "deny/other-team", teams: "checkout", module: proxytest.HelloV2Path, version: "v2.0.0", verdict: "Denied", reason: "team checkout may not pull mod.test/hello/v2@v2.0.0"},
			{name: "allow/owner", teams: "payments", module: proxytest.HelloV2Path, version: "v2.0.0", verdict: "Allowed"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				do(t, ctx,
					chromedp.Navigate(url+"/ui/policy"),
					chromedp.WaitVisible(chromedp.ID("whatif")),
					chromedp.SendKeys(chromedp.ID("w-subject"), "carol"),
					chromedp.SendKeys(chromedp.ID("w-teams"), tt.teams),
					chromedp.SetValue(chromedp.ID("w-action"), "zip"),
					chromedp.SendKeys(chromedp.ID("w-module"), tt.module),
					chromedp.SendKeys(chromedp.ID("w-version"), tt.version),
					chromedp.Click(chromedp.ID("decide")),
					chromedp.WaitVisible(chromedp.ID("verdict")),
				)
				verdict := value(t, ctx, chromedp.Text(chromedp.CSS("#verdict h3")))
				reasons := value(t, ctx, chromedp.Text(chromedp.ID("reasons")))
				if verdict != tt.verdict || !strings.Contains(reasons, tt.reason) {
					t.Errorf("verdict %q, reasons %q; want %q with %q", verdict, reasons, tt.verdict, tt.reason)
				}
				screenshot(t, ctx, "5-policy-"+strings.ReplaceAll(tt.name, "/", "-"))
			})
		}
	})

	t.Run("policy-file", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(url+"/ui/policy/files/data.yaml"), chromedp.WaitVisible(chromedp.CSS("pre.file")))
		if text := value(t, ctx, chromedp.Text(chromedp.CSS("pre.file"))); !strings.Contains(text, "auditor_teams: [security-audit]") {
			t.Errorf("data.yaml shown as %q", text)
		}
		screenshot(t, ctx, "6-policy-file")
	})

	t.Run("health", func(t *testing.T) {
		do(t, ctx, chromedp.Navigate(url+"/ui/health"), chromedp.WaitVisible(chromedp.ID("upstreams")))
		ratio := value(t, ctx, chromedp.Text(chromedp.ID("hit-ratio")))
		ups := tableRows(t, ctx, "upstreams")
		if len(ups) != 1 || ups[0][0] != upstream.URL || ups[0][1] == "0" {
			t.Errorf("upstreams: %q, want %s with successful fetches", ups, upstream.URL)
		}
		if !strings.HasSuffix(ratio, "%") {
			t.Errorf("hit ratio %q", ratio)
		}
		screenshot(t, ctx, "7-health")
	})

	t.Run("sign-out", func(t *testing.T) {
		do(t, ctx,
			chromedp.Click(chromedp.CSS("header form button")),
			chromedp.WaitVisible(chromedp.ID("signin")),
			chromedp.Navigate(url+"/ui/health"),
			chromedp.WaitVisible(chromedp.ID("signin")),
		)
		if loc := value(t, ctx, chromedp.Location()); !strings.Contains(loc, "/ui/signin") {
			t.Errorf("after sign-out /ui/health led to %s", loc)
		}
	})
}
