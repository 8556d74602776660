package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// copyPolicy copies the shipped policy/ into a temporary directory and replaces
// the data files named in data, so a test edits its own workspace as the security
// team would edit theirs.
func copyPolicy(t *testing.T, data map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	ents, err := os.ReadDir("../../policy")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join("../../policy", e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if strings.HasSuffix(e.Name(), ".yaml") || strings.HasSuffix(e.Name(), "_test.rego") {
			// The shipped data and its Rego tests are about corp.example; this
			// workspace brings its own data (and so no tests of the shipped data).
			continue
		}
		writeFile(t, filepath.Join(dir, e.Name()), b)
	}
	for name, content := range data {
		writeFile(t, filepath.Join(dir, name), []byte(content))
	}
	return dir
}

const testPolicyData = `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
  cooldown:
    enabled: true
    hours: 72
owners:
  mod.test/hello:
    team: payments
    shared_with: [checkout]
denylist:
  mod.test/legacy:
    reason: abandoned fork with known RCE, see SEC-7
`

// Two teams through the real go command: the owning team pulls, another team is
// refused with the policy's reason, a deny-listed module is refused for everyone,
// and under the cool-down `go get m@latest` picks the newest version old enough.
func TestPolicyThroughGoCommand(t *testing.T) {
	modules := proxytest.StandardModules()
	fresh := "mod.test/fresh"
	old := time.Now().Add(-30 * 24 * time.Hour).UTC().Truncate(time.Second)
	modules = append(modules,
		proxytest.Module{Path: fresh, Version: "v1.0.0", Time: old, Files: map[string]string{"go.mod": "module mod.test/fresh\n", "f.go": "package fresh\n"}},
		proxytest.Module{Path: fresh, Version: "v1.1.0", Time: time.Now().Add(-time.Hour).UTC().Truncate(time.Second), Files: map[string]string{"go.mod": "module mod.test/fresh\n", "f.go": "package fresh\n// new\n"}},
	)
	upstream := proxytest.NewServer(t, modules...)
	idp := oidctest.Start(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": testPolicyData})
	url := startApp(t, cfg)

	goAs := func(t *testing.T, subject, team string) *gotest.Go {
		g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, idp.IssueToken(subject, []string{"team-" + team})))
		return g
	}

	tests := []struct {
		name, subject, team, module string
		wantErr                     string
	}{
		{name: "ok/owner-pulls", subject: "alice", team: "payments", module: proxytest.HelloPath + "@v1.1.0"},
		{name: "ok/shared-team-pulls", subject: "carl", team: "checkout", module: proxytest.HelloPath + "@v1.0.0"},
		{name: "fail/other-team-refused", subject: "bob", team: "risk", module: proxytest.HelloPath + "@v1.1.0",
			wantErr: "403 Forbidden\n\tserver response: team risk may not pull mod.test/hello"},
		{name: "fail/deny-listed-for-owner-too", subject: "alice", team: "payments", module: proxytest.LegacyPath + "@v1.0.0",
			wantErr: "mod.test/legacy is deny-listed: abandoned fork with known RCE, see SEC-7"},
		{name: "fail/deny-listed-for-everyone", subject: "zed", team: "platform-admins", module: proxytest.LegacyPath + "@v1.0.0",
			wantErr: "is deny-listed: abandoned fork with known RCE, see SEC-7"},
		{name: "fail/cooldown-exact-version", subject: "alice", team: "payments", module: fresh + "@v1.1.0",
			wantErr: "yet: it was published less than 72 hours ago"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := goAs(t, tt.subject, tt.team)
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

	t.Run("ok/cooldown-latest-picks-allowed", func(t *testing.T) {
		g := goAs(t, "alice", "payments")
		dir := g.MainModule("example.com/app")
		if _, stderr, err := g.Run(dir, "get", fresh+"@latest"); err != nil {
			t.Fatalf("go get %s@latest: %v\n%s", fresh, err, stderr)
		}
		assertRequires(t, dir, fresh+" v1.0.0")
		out, stderr, err := g.Run("", "list", "-m", "-versions", fresh)
		if err != nil || strings.TrimSpace(out) != fresh+" v1.0.0" {
			t.Errorf("list under cool-down = %q (%v %s), want only v1.0.0", out, err, stderr)
		}
	})

	t.Run("ok/non-module-prefix-is-404-not-403", func(t *testing.T) {
		// go get of a package path probes @v/list of each prefix; a prefix that
		// is not a module must not abort the probe with a 403.
		g := goAs(t, "bob", "risk")
		resp, body := getWithToken(t, p.CAFile, url+"/mod.test/hello/sub/@v/list", idp.IssueToken("bob", []string{"team-risk"}))
		if resp != 404 {
			t.Errorf("probe of a non-module prefix under a denied path: %d %q, want 404", resp, body)
		}
		_ = g
	})

	t.Run("ok/reload-changes-decision", func(t *testing.T) {
		g := goAs(t, "bob", "risk")
		writeFile(t, filepath.Join(cfg.Policy.Dir, "data.yaml"), []byte(strings.Replace(testPolicyData, "shared_with: [checkout]", "shared_with: [checkout, risk]", 1)))
		deadline := time.Now().Add(15 * time.Second)
		for {
			_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0")
			if err == nil {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("policy edit not picked up: %s", stderr)
			}
			time.Sleep(300 * time.Millisecond)
		}
		// A broken edit is rejected and decisions continue from the last good policy.
		writeFile(t, filepath.Join(cfg.Policy.Dir, "authz.rego"), []byte("package modgate.authz\n\nthis is not rego\n"))
		time.Sleep(3 * time.Second)
		g2 := goAs(t, "bob", "risk")
		if _, stderr, err := g2.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0"); err != nil {
			t.Fatalf("after a broken edit: %v\n%s", err, stderr)
		}
		if code, body := getWithToken(t, p.CAFile, url+"/readyz", ""); code != 200 || !strings.Contains(body, "last reload rejected") {
			t.Errorf("readyz after a broken edit: %d %q", code, body)
		}
	})
}
