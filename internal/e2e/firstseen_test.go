package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// The cool-down measures a version's age from the later of its .info Time and
// modgate's first sight of it: a release whose .info Time is backdated by a
// year is still held when modgate first sees it now, while a version modgate
// first saw long ago is allowed.
func TestCooldownFromFirstSight(t *testing.T) {
	const backdated, seen = "mod.test/backdated", "mod.test/seenlongago"
	yearAgo := time.Now().Add(-365 * 24 * time.Hour).UTC().Truncate(time.Second)
	files := func(path string) map[string]string {
		return map[string]string{"go.mod": "module " + path + "\n", "f.go": "package f\n"}
	}
	upstream := proxytest.NewServer(t, append(proxytest.StandardModules(),
		proxytest.Module{Path: backdated, Version: "v1.0.0", Time: yearAgo, Files: files(backdated)},
		proxytest.Module{Path: seen, Version: "v1.0.0", Time: yearAgo, Files: files(seen)},
	)...)
	pool, dbURL := pgtest.NewPool(t)
	ctx := context.Background()
	if _, err := pool.Exec(ctx, `INSERT INTO version_first_seen (module, version, first_seen) VALUES ($1, 'v1.0.0', $2)`,
		seen, time.Now().Add(-200*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	idp := oidctest.Start(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": testPolicyData})
	url := startApp(t, cfg)
	goAs := func(t *testing.T) *gotest.Go {
		g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, idp.IssueToken("alice", []string{"team-payments"})))
		return g
	}

	t.Run("fail/backdated-release-held", func(t *testing.T) {
		for range 2 { // the first sight is recorded once, not moved by the second
			_, stderr, err := goAs(t).Run("", "mod", "download", backdated+"@v1.0.0")
			if want := "yet: it was published less than 72 hours ago"; err == nil || !strings.Contains(stderr, want) {
				t.Fatalf("go mod download %s@v1.0.0: err=%v; want %q in:\n%s", backdated, err, want, stderr)
			}
		}
		var first time.Time
		if err := pool.QueryRow(ctx, `SELECT first_seen FROM version_first_seen WHERE module = $1 AND version = 'v1.0.0'`, backdated).Scan(&first); err != nil {
			t.Fatalf("first sight not recorded: %v", err)
		}
		if time.Since(first) > 10*time.Minute {
			t.Errorf("first sight recorded as %v, want about now", first)
		}
	})
	// Lists count from the first sight alone, all of a list's in one
	// statement: the version first seen long ago is listed, the backdated one
	// (first seen by the test above) is not, whatever its .info Time says.
	t.Run("ok/list-by-first-sight", func(t *testing.T) {
		for mod, want := range map[string]string{seen: seen + " v1.0.0", backdated: backdated} {
			stdout, stderr, err := goAs(t).Run("", "list", "-m", "-versions", mod)
			if err != nil || strings.TrimSpace(stdout) != want {
				t.Errorf("go list -m -versions %s = %q, %v; want %q\n%s", mod, stdout, err, want, stderr)
			}
		}
	})
	t.Run("ok/first-seen-long-ago-allowed", func(t *testing.T) {
		if _, stderr, err := goAs(t).Run("", "mod", "download", seen+"@v1.0.0"); err != nil {
			t.Fatalf("go mod download %s@v1.0.0: %v\n%s", seen, err, stderr)
		}
	})
}
