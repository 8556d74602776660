package e2e

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/netrc"
	"github.com/modgate/modgate/internal/testing/gittest"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/nodeop"
	"github.com/modgate/modgate/internal/testing/oidctest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// signedInIdP is what the developer's-day test needs from an OpenID Provider.
type signedInIdP struct {
	issuer, clientID string
	caFile           string // the CA of the IdP's TLS certificate, and nothing else
	// approve approves the device login whose output (`modgate login`
	// stdout) is r, as user, a member of groups, and drains r.
	approve          func(ctx context.Context, r io.Reader, user string, groups []string) error
	deviceScopes     func() string
	userinfoRequests func() int64
	rotateKeys       func() string // returns the new signing key's kid
	retireOldKeys    func()
}

// The IdPs' ID tokens live this long: the test waits for one to expire.
const signedInTokenTTL = 20 * time.Second

func startZitadelIdP(t *testing.T) signedInIdP {
	idp := oidctest.Start(t)
	idp.SetTokenLifetime(signedInTokenTTL)
	idp.SetGroupsOnlyAtUserinfo(true)
	return signedInIdP{
		issuer: idp.Issuer(), clientID: idp.ClientID(), caFile: idp.CAFile(t),
		approve: func(ctx context.Context, r io.Reader, user string, groups []string) error {
			// Approved as the device authorization arrives (the user code is
			// only known to the login process).
			idp.AutoApprove(user, groups)
			go io.Copy(io.Discard, r)
			return nil
		},
		deviceScopes:     idp.DeviceScopes,
		userinfoRequests: idp.UserinfoRequests,
		rotateKeys: func() string {
			idp.RotateKeys()
			return idp.SigningKeyID()
		},
		retireOldKeys: idp.RetireOldKeys,
	}
}

func startNodeIdP(t *testing.T) signedInIdP {
	idp := nodeop.Start(t, nodeop.Options{IDTokenTTL: signedInTokenTTL})
	return signedInIdP{
		issuer: idp.Issuer(), clientID: idp.ClientID(), caFile: idp.CAFile(),
		approve:          idp.WaitForApproval,
		deviceScopes:     func() string { return idp.State().DeviceScopes },
		userinfoRequests: func() int64 { return int64(idp.State().UserinfoRequests) },
		rotateKeys:       idp.RotateKeys,
		retireOldKeys:    idp.RetireOldKeys,
	}
}

// A developer's day with each IdP: `modgate login` (device flow, the scopes
// the proxy publishes), then the go command with GOAUTH as documented and the
// .netrc login wrote. The ID token expires and the IdP rotates its signing
// key; the go command carries on with no action. Teams come from userinfo,
// since the ID tokens carry no groups. modgate trusts the IdP through
// auth.oidc.ca_file alone.
func TestDeveloperStaysSignedIn(t *testing.T) {
	// Whatever SSL_CERT_FILE the test process has cannot hold the IdPs' CAs,
	// made fresh by each test; step 5 shows modgate fails without ca_file.
	for _, tt := range []struct {
		name  string
		start func(*testing.T) signedInIdP
	}{
		{name: "zitadel-op", start: startZitadelIdP},
		{name: "node-oidc-provider", start: startNodeIdP},
	} {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			developerDay(t, tt.start(t))
		})
	}
}

func developerDay(t *testing.T, idp signedInIdP) {
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()

	git := gittest.NewServer(t)
	repo := git.NewRepo(t, "payments/ledger.git")
	for _, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		repo.Commit(v, map[string]string{"go.mod": "module corp.example/payments/ledger.git\n", "x.go": "package x // " + v + "\n"})
		repo.Tag(v)
	}
	pwFile := filepath.Join(t.TempDir(), "git-token")
	writeFile(t, pwFile, []byte(gittest.Password))
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)

	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Cache.Dir = t.TempDir()
	oidcCfg := auth.OIDCConfig{
		Issuer: idp.issuer, Audiences: []string{idp.clientID},
		TeamPrefix: "team-",
		CAFile:     idp.caFile, // no HTTPClient, no SSL_CERT_FILE
	}
	cfg.Auth.OIDC = oidcCfg
	cfg.Auth.LoginClientID = idp.clientID
	// Not login.DefaultScopes: no profile, no email.
	cfg.Auth.LoginScopes = []string{"openid", "offline_access", "groups"}
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
owners:
  corp.example/payments:
    team: payments
`})
	cfg.Private.Routes = []config.PrivateRoute{{
		Pattern: privatePrefix, Repo: git.URL + "/{path}", RootDepth: 3,
		Credentials: config.GitCredentials{Username: gittest.User, PasswordFile: pwFile},
	}}
	url := startApp(t, cfg)

	// The developer's machine: modgate on PATH, GOAUTH as documented, the
	// proxy's CA for the go command (it never talks to the IdP).
	bin := modgateBinary(t)
	g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB="+privatePrefix, "SSL_CERT_FILE="+p.CAFile,
		"GOAUTH="+login.GOAUTH, "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
	bundle := filepath.Join(t.TempDir(), "ca-bundle.pem")
	writeFile(t, bundle, append(mustRead(t, p.CAFile), mustRead(t, idp.caFile)...))

	// 1. modgate login: device flow, approved in the "browser".
	cmd := exec.CommandContext(ctx, bin, "login", "--ca-file", bundle, url)
	cmd.Env = append(g.Env(), "SSL_CERT_FILE=") // the bundle alone
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stdout bytes.Buffer
	var stderr safeBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	approved := make(chan error, 1)
	go func() {
		approved <- idp.approve(ctx, io.TeeReader(out, &stdout), "alice@corp.example", []string{"team-payments"})
	}()
	if err := <-approved; err != nil {
		cmd.Process.Kill()
		cmd.Wait()
		t.Fatalf("approving the device login: %v\nstdout:\n%s\nstderr:\n%s", err, stdout.String(), stderr.String())
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("modgate login: %v\n%s", err, stderr.String())
	}
	if got := idp.deviceScopes(); got != "openid offline_access groups" {
		t.Errorf("the device authorization asked for %q, want the published %q", got, "openid offline_access groups")
	}

	netrcPath := filepath.Join(g.Home, ".netrc")
	host := strings.TrimPrefix(url, "https://")
	entry, ok := netrc.Parse(mustRead(t, netrcPath)).Lookup(host)
	if !ok {
		t.Fatalf("modgate login wrote no .netrc entry for %s", host)
	}
	firstToken := entry.Password
	claims := jwtClaims(t, firstToken)
	if _, has := claims["groups"]; has {
		t.Fatalf("the IdP put groups in the ID token; the test needs them only at userinfo: %v", claims)
	}

	// 2. The go command, straight away: the team comes from userinfo.
	if _, stderr, err := g.Run("", "mod", "download", "corp.example/payments/ledger.git@v1.0.0"); err != nil {
		t.Fatalf("go mod download after login: %v\n%s", err, stderr)
	}
	if idp.userinfoRequests() == 0 {
		t.Error("modgate never asked userinfo for the groups")
	}
	// The ID token alone (no access token beside it): no groups, no team.
	if status, body := getWithAuth(t, p.CAFile, url+"/corp.example/payments/ledger.git/@v/list", "Bearer "+firstToken); status != http.StatusForbidden || !strings.Contains(body, "owned by team payments") {
		t.Errorf("ID token without access token: %d %q, want 403 naming the owner team", status, body)
	}

	// 3. The ID token expires. The .netrc still holds it, GOAUTH puts the
	// helper first: the go command carries on with a refreshed token.
	time.Sleep(time.Until(time.Unix(int64(claims["exp"].(float64)), 0).Add(time.Second)))
	if status, body := getWithAuth(t, p.CAFile, url+"/"+proxytest.HelloPath+"/@v/list", "Basic "+base64.StdEncoding.EncodeToString([]byte(entry.Login+":"+firstToken))); status != http.StatusUnauthorized || !strings.Contains(body, "token expired") {
		t.Fatalf("the .netrc token after its expiry: %d %q, want 401 token expired", status, body)
	}
	if _, stderr, err := g.Run("", "mod", "download", "corp.example/payments/ledger.git@v1.1.0", proxytest.HelloPath+"@v1.0.0"); err != nil {
		t.Fatalf("go mod download after the ID token expired: %v\n%s", err, stderr)
	}
	if e, _ := netrc.Parse(mustRead(t, netrcPath)).Lookup(host); e.Password != firstToken {
		t.Error("the .netrc entry changed; the test is about the go command using the helper despite it")
	}

	// 4. Key rotation at the IdP: the next token is signed with the new key,
	// which modgate fetches; then the old key is withdrawn.
	newKid := idp.rotateKeys()
	if _, stderr, err := g.Run("", "mod", "download", "corp.example/payments/ledger.git@v1.2.0"); err != nil {
		t.Fatalf("go mod download after key rotation: %v\n%s", err, stderr)
	}
	credPath := filepath.Join(g.Home, ".config", "modgate", "credentials.json")
	creds, err := login.LoadCredentials(credPath)
	if err != nil || len(creds) != 1 {
		t.Fatalf("credentials %s: %v %d", credPath, err, len(creds))
	}
	if kid := jwtPart(t, creds[0].IDToken, 0)["kid"]; kid != newKid {
		t.Errorf("the token in use has kid %v, want the rotated key %s", kid, newKid)
	}
	idp.retireOldKeys()
	if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.1.0"); err != nil {
		t.Fatalf("go mod download after the old key was retired: %v\n%s", err, stderr)
	}

	// 5. auth.oidc.ca_file is what lets modgate reach the IdP: without it the
	// same token is refused with 503 (discovery fails on the unknown CA).
	noCA := cfg
	noCA.Auth.OIDC = oidcCfg
	noCA.Auth.OIDC.CAFile = ""
	noCA.Cache.Dir = t.TempDir()
	urlNoCA := startApp(t, noCA)
	if status, body := getWithAuth(t, p.CAFile, urlNoCA+"/"+proxytest.HelloPath+"/@v/list", creds[0].Header()); status != http.StatusServiceUnavailable || !strings.Contains(body, "identity provider unavailable") {
		t.Errorf("modgate without auth.oidc.ca_file: %d %q, want 503 identity provider unavailable", status, body)
	}
}

// getWithAuth sends one request to modgate with the Authorization header given.
func getWithAuth(t *testing.T, caFile, u, authorization string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Authorization", authorization)
	resp, err := clientTrusting(t, caFile).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, strings.TrimSpace(string(b))
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func jwtPart(t *testing.T, raw string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		t.Fatalf("not a JWT: %q", raw)
	}
	b, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

func jwtClaims(t *testing.T, raw string) map[string]any { return jwtPart(t, raw, 1) }
