package main

import (
	"context"
	"io"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/certgen"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

// publishTestServer runs a full modgate (internal/app, as `modgate serve` builds
// it) over TLS with PostgreSQL, OIDC and the shipped Rego policy, with corp.test
// private and owned by team platform. It returns the URL, the CA file to trust
// and the cache directory.
func publishTestServer(t *testing.T, idp *oidctest.Provider) (url, caFile, cacheDir string) {
	t.Helper()
	ca, err := certgen.NewCA("modgate publish test CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	caFile = filepath.Join(dir, "ca.pem")
	certFile, keyFile := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	for name, data := range map[string][]byte{caFile: ca.CertPEM, certFile: leaf.CertPEM, keyFile: leaf.KeyPEM} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	policyDir := t.TempDir()
	rego, err := os.ReadFile("../../policy/authz.rego")
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(filepath.Join(policyDir, "authz.rego"), rego, 0o644)
	os.WriteFile(filepath.Join(policyDir, "data.yaml"), []byte(`settings:
  admin_teams: [platform-admins]
  anonymous: deny
owners:
  corp.test:
    team: platform
`), 0o644)
	_, dbURL := pgtest.NewPool(t)

	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cacheDir = t.TempDir()
	cfg.Cache.Dir = cacheDir
	cfg.Upstream.Proxies = "off"
	cfg.Private.Patterns = "corp.test"
	cfg.Database.URL = dbURL
	cfg.Policy.Dir = policyDir
	cfg.Audit.SpoolDir = t.TempDir()
	cfg.TLS = auth.TLSConfig{CertFile: certFile, KeyFile: keyFile}
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer: idp.Issuer(), Audiences: []string{idp.ClientID()},
		TeamPrefix: "team-", HTTPClient: idp.HTTPClient(),
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a, err := app.New(ctx, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- a.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		<-done
		a.Close()
	})
	return "https://" + ln.Addr().String(), caFile, cacheDir
}

// writeModule writes a small module to a new directory, with a .git directory
// the zip must leave out.
func writeModule(t *testing.T, modPath string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range map[string]string{
		"go.mod":        "module " + modPath + "\n\ngo 1.21\n",
		"greet.go":      "package greet\n\n// Hello greets.\nfunc Hello() string { return \"hello from " + modPath + "\" }\n",
		".git/HEAD":     "ref: refs/heads/main\n",
		"README.md":     "# greet\n",
		"sub/sub.go":    "package sub\n",
		"testdata/x":    "data\n",
		".gitignore":    "*.out\n",
		"greet_test.go": "package greet\n",
	} {
		p := filepath.Join(dir, filepath.FromSlash(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// The developer's path end to end: `modgate publish` a directory, then `go get`
// it through modgate in a fresh module cache; go.sum records exactly the hash of
// the zip modgate stored. Then `modgate delete` it: the go command prints 410
// with the reason, and publishing it again is refused.
func TestPublishCommandThenGoGet(t *testing.T) {
	t.Parallel()
	idp := oidctest.Start(t)
	url, caFile, cacheDir := publishTestServer(t, idp)
	const mod, ver = "corp.test/greet", "v1.0.0"
	src := writeModule(t, mod)
	owner := idp.IssueToken("alice", []string{"team-platform"})

	// The credential comes from ~/.netrc, as `modgate login` leaves it.
	netrcPath := filepath.Join(t.TempDir(), ".netrc")
	os.WriteFile(netrcPath, []byte("machine "+strings.TrimPrefix(url, "https://")+" login modgate password "+owner+"\n"), 0o600)
	var out, errOut strings.Builder
	err := runPublish(context.Background(), []string{src, "--version", ver, "--proxy", url, "--netrc", netrcPath, "--ca-file", caFile}, &out, &errOut)
	if err != nil {
		t.Fatalf("modgate publish: %v\n%s", err, errOut.String())
	}
	if !strings.Contains(out.String(), mod+"@"+ver+" published: ") || !strings.Contains(out.String(), " by alice at ") {
		t.Errorf("publish output: %q", out.String())
	}

	// The stored zip, hashed as the go command hashes it.
	var stored []string
	filepath.Walk(filepath.Join(cacheDir, "published"), func(p string, fi os.FileInfo, err error) error {
		if err == nil && strings.HasSuffix(p, ".zip") {
			stored = append(stored, p)
		}
		return nil
	})
	if len(stored) != 1 {
		t.Fatalf("stored zips: %q, want one", stored)
	}
	want, err := dirhash.HashZip(stored[0], dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), want) {
		t.Errorf("publish output %q does not name the stored zip's hash %s", out.String(), want)
	}

	g := gotest.New(t, "GOPROXY="+url, "GOSUMDB=off", "SSL_CERT_FILE="+caFile)
	os.WriteFile(filepath.Join(g.Home, ".netrc"), []byte("machine "+strings.TrimPrefix(url, "https://")+" login modgate password "+idp.IssueToken("bob", []string{"team-platform"})+"\n"), 0o600)
	app := g.MainModule("example.com/app")
	os.WriteFile(filepath.Join(app, "main.go"), []byte("package main\n\nimport \"corp.test/greet\"\n\nfunc main() { println(greet.Hello()) }\n"), 0o644)
	if _, stderr, err := g.Run(app, "get", mod+"@"+ver); err != nil {
		t.Fatalf("go get: %v\n%s", err, stderr)
	}
	sum, err := os.ReadFile(filepath.Join(app, "go.sum"))
	if err != nil || !strings.Contains(string(sum), mod+" "+ver+" "+want+"\n") {
		t.Fatalf("go.sum = %q, want the stored zip's %s", sum, want)
	}
	if _, stderr, err := g.Run(app, "build", "./..."); err != nil {
		t.Fatalf("go build with the published module: %v\n%s", err, stderr)
	}
	extracted := filepath.Join(g.ModCache, "corp.test", "greet@"+ver)
	if _, err := os.Stat(filepath.Join(extracted, ".git")); err == nil {
		t.Error("the published zip holds .git")
	}
	if _, err := os.Stat(filepath.Join(extracted, "sub", "sub.go")); err != nil {
		t.Errorf("sub/sub.go missing from the published module: %v", err)
	}

	// Publishing the same directory again is an idempotent success.
	out.Reset()
	if err := runPublish(context.Background(), []string{"--version", ver, "--proxy", url, "--token", owner, "--ca-file", caFile, src}, &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "already published (identical content)") {
		t.Errorf("re-publish: %v %q", err, out.String())
	}

	// Only an admin deletes.
	err = runDelete(context.Background(), []string{mod + "@" + ver, "--reason", "oops", "--proxy", url, "--token", owner, "--ca-file", caFile}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "403 Forbidden: team platform may not delete corp.test/greet@v1.0.0") {
		t.Errorf("delete by the owner: %v", err)
	}
	admin := idp.IssueToken("root", []string{"team-platform-admins"})
	out.Reset()
	if err := runDelete(context.Background(), []string{mod + "@" + ver, "--reason", "leaks an internal hostname", "--proxy", url, "--token", admin, "--ca-file", caFile}, &out, &errOut); err != nil {
		t.Fatalf("modgate delete: %v", err)
	}
	g2 := gotest.New(t, "GOPROXY="+url, "GOSUMDB=off", "SSL_CERT_FILE="+caFile)
	os.WriteFile(filepath.Join(g2.Home, ".netrc"), []byte("machine "+strings.TrimPrefix(url, "https://")+" login modgate password "+owner+"\n"), 0o600)
	_, stderr, err := g2.Run("", "mod", "download", mod+"@"+ver)
	if err == nil || !strings.Contains(stderr, "410 Gone\n\tserver response: corp.test/greet@v1.0.0 was deleted by root at ") || !strings.Contains(stderr, ": leaks an internal hostname") {
		t.Errorf("download after delete: %v, want 410 with the reason:\n%s", err, stderr)
	}
	if _, err := os.Stat(stored[0]); !os.IsNotExist(err) {
		t.Errorf("the deleted version's zip is still stored: %v", err)
	}
	err = runPublish(context.Background(), []string{src, "--version", ver, "--proxy", url, "--token", owner, "--ca-file", caFile}, &out, &errOut)
	if err == nil || !strings.Contains(err.Error(), "410 Gone: corp.test/greet@v1.0.0 was deleted by root at ") || !strings.Contains(err.Error(), "can never be published again: leaks an internal hostname") {
		t.Errorf("re-publish after delete: %v", err)
	}
}

// Not parallel: it clears MODGATE_PROXY and MODGATE_TOKEN.
func TestPublishCommandErrors(t *testing.T) {
	src := writeModule(t, "corp.test/greet")
	tests := []struct {
		name string
		run  func(context.Context, []string, io.Writer, io.Writer) error
		args []string
		want string // in the error; "" means success (help)
	}{
		{name: "ok/publish-help", run: runPublish, args: []string{"--help"}},
		{name: "ok/delete-help", run: runDelete, args: []string{"--help"}},
		{name: "fail/no-version", run: runPublish, args: []string{src, "--proxy", "https://x.test", "--token", "t"}, want: "--version is required"},
		{name: "fail/non-canonical-version", run: runPublish, args: []string{src, "--version", "v1", "--proxy", "https://x.test", "--token", "t"}, want: `version "v1" is not a canonical semantic version`},
		{name: "fail/no-proxy", run: runPublish, args: []string{src, "--version", "v1.0.0", "--token", "t"}, want: "no proxy"},
		{name: "fail/no-credential", run: runPublish, args: []string{src, "--version", "v1.0.0", "--proxy", "https://x.test", "--netrc", filepath.Join(t.TempDir(), "none")}, want: "no credential for x.test"},
		{name: "fail/no-go-mod", run: runPublish, args: []string{t.TempDir(), "--version", "v1.0.0", "--proxy", "https://x.test", "--token", "t"}, want: "go.mod"},
		{name: "fail/delete-no-reason", run: runDelete, args: []string{"corp.test/greet@v1.0.0", "--proxy", "https://x.test", "--token", "t"}, want: "--reason is required"},
		{name: "fail/delete-not-module-at-version", run: runDelete, args: []string{"corp.test/greet", "--reason", "x"}, want: "is not module@version"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("MODGATE_PROXY", "")
			t.Setenv("MODGATE_TOKEN", "")
			var out, errOut strings.Builder
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			err := tt.run(ctx, tt.args, &out, &errOut)
			if tt.want == "" {
				if err != nil || !strings.Contains(errOut.String(), "usage: modgate") {
					t.Errorf("help: %v, usage %q", err, errOut.String())
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("err = %v, want %q", err, tt.want)
			}
		})
	}
}
