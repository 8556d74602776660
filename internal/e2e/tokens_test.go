package e2e

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// CI machines authenticate with API tokens from ~/.netrc; wrong, expired and
// revoked tokens are refused with their reasons, a revocation within seconds.
func TestAPITokensFromNetrc(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	pool, dbURL := pgtest.NewPool(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	url := startApp(t, cfg)

	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good, tok, err := store.Create(ctx, tokens.CreateRequest{Subject: "ci-build", Teams: []string{"platform"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	short, _, err := store.Create(ctx, tokens.CreateRequest{Subject: "ci-old", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond)

	run := func(t *testing.T, secret string) (string, error) {
		g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, secret))
		_, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0")
		return stderr, err
	}
	if stderr, err := run(t, good); err != nil {
		t.Fatalf("valid token: %v\n%s", err, stderr)
	}
	wrong := good[:len(good)-4] + "aaaa"
	if wrong == good {
		wrong = good[:len(good)-4] + "bbbb"
	}
	for name, tc := range map[string]struct{ secret, want string }{
		"wrong":   {wrong, "server response: API token not recognised"},
		"expired": {short, "server response: API token expired"},
	} {
		t.Run(name, func(t *testing.T) {
			stderr, err := run(t, tc.secret)
			if err == nil || !strings.Contains(stderr, tc.want) {
				t.Fatalf("err=%v; want %q in:\n%s", err, tc.want, stderr)
			}
			if strings.Contains(stderr, tc.secret) {
				t.Error("the go command's output echoes the secret")
			}
		})
	}

	if _, err := store.Revoke(ctx, tok.ID, "test"); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		stderr, err := run(t, good)
		if err != nil && strings.Contains(stderr, "server response: API token revoked") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("revoked token still accepted after 5s: err=%v\n%s", err, stderr)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
