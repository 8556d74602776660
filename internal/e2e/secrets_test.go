package e2e

import (
	"context"
	"net/http"
	"net/url"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// Representative authenticated flows with known secrets — valid, wrong, expired
// and revoked API tokens as Bearer and as .netrc Basic passwords through the go
// command, a password sent to a token-less Basic user, the audit API, and a
// database URL carrying a password — and then every line modgate logged (at
// debug level) is searched for each secret. Responses are searched too: a
// refusal must never echo the credential it refuses.
func TestSecretsNeverLogged(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	pool, dbURL := pgtest.NewPool(t)
	const dbPassword = "db-pa55word-canary"
	u, err := url.Parse(dbURL)
	if err != nil {
		t.Fatal(err)
	}
	u.User = url.UserPassword(u.User.Username(), dbPassword) // loopback trust auth ignores it
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = u.String()
	idp := oidctest.Start(t)
	cfg.Auth.OIDC = auth.OIDCConfig{
		Issuer:     idp.Issuer(),
		Audiences:  []string{idp.ClientID()},
		GroupTeams: map[string]string{"payments-devs": "payments"},
		HTTPClient: idp.HTTPClient(),
	}
	logs := &safeBuffer{}
	base := startAppLogging(t, cfg, logs)

	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	good, _, err := store.Create(ctx, tokens.CreateRequest{Subject: "ci-build", Teams: []string{"platform"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	expired, _, err := store.Create(ctx, tokens.CreateRequest{Subject: "ci-old", TTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	revoked, revokedTok, err := store.Create(ctx, tokens.CreateRequest{Subject: "ci-gone", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := store.Revoke(ctx, revokedTok.ID, "test"); err != nil {
		t.Fatal(err)
	}
	time.Sleep(1100 * time.Millisecond) // expire the short token
	wrong := good[:len(good)-6] + "zzzzzz"
	const basicPassword = "basic-pa55word-canary"
	// OIDC ID tokens: valid, expired, for another audience, and one whose
	// signature is broken.
	oidcValid := idp.IssueToken("alice", []string{"payments-devs"})
	oidcExpired := idp.IssueToken("alice", nil, oidctest.WithExpiry(time.Now().Add(-time.Minute)))
	oidcAudience := idp.IssueToken("alice", nil, oidctest.WithAudience("someone-else"))
	oidcForged := oidcValid[:len(oidcValid)-8] + "AAAAAAAA"
	secrets := map[string]string{"valid token": good, "expired token": expired, "revoked token": revoked,
		"wrong token": wrong, "basic password": basicPassword, "database password": dbPassword,
		"valid OIDC token": oidcValid, "expired OIDC token": oidcExpired,
		"OIDC token for another audience": oidcAudience, "forged OIDC token": oidcForged}

	info := base + "/" + proxytest.HelloPath + "/@v/v1.0.0.info"
	var responses []string
	for _, tok := range []string{good, expired, revoked, wrong, oidcValid, oidcExpired, oidcAudience, oidcForged} {
		_, body := getWithToken(t, p.CAFile, info, tok)
		responses = append(responses, body)
	}
	_, body := getWithToken(t, p.CAFile, base+"/api/v1/audit/events", good)
	responses = append(responses, body)
	req, _ := http.NewRequest("GET", info, nil)
	req.SetBasicAuth("someone", basicPassword)
	if resp, err := clientTrusting(t, p.CAFile).Do(req); err == nil {
		resp.Body.Close()
	}
	for _, secret := range []string{good, wrong, oidcValid, oidcForged} {
		g := gotest.New(t, "GOPROXY="+base, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(base, secret))
		_, stderr, _ := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0")
		responses = append(responses, stderr)
	}

	out := logs.String()
	if !strings.Contains(out, `"msg":"request"`) {
		t.Fatalf("captured no request logs; the scan would prove nothing:\n%s", out)
	}
	for name, secret := range secrets {
		// The secret whole, and its distinctive tail (a log line truncating it
		// is still a leak).
		for _, s := range []string{secret, secret[len(secret)-12:]} {
			if strings.Contains(out, s) {
				t.Errorf("the log contains the %s", name)
			}
			for _, r := range responses {
				if strings.Contains(r, s) {
					t.Errorf("a response echoes the %s: %q", name, r)
				}
			}
		}
	}
}
