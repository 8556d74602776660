// Package nodeop runs a second real OpenID Provider for tests, beside the
// zitadel one in oidctest: npm's oidc-provider (the version pinned in
// package.json and package-lock.json), on a loopback HTTPS server whose
// certificate comes from a test CA of its own. It is configured as many
// production IdPs behave:
//
//   - the device authorization grant (RFC 8628) for one public client, with
//     refresh tokens (offline_access) rotated at every use;
//   - ID tokens from the token endpoint carry no user claims but sub
//     (oidc-provider's conformIdTokenClaims default): the groups claim (scope
//     "groups") comes only from the userinfo endpoint;
//   - a short ID-token lifetime chosen by the test;
//   - key rotation on demand: a new signing key, the old one still published
//     until RetireOldKeys.
//
// The user's approval in the browser is driven over HTTP by ApproveDevice:
// the device verification pages, then the sign-in form.
//
// Node.js (20.19+) and npm must be installed; the package's dependencies are
// installed with `npm ci` into the user's cache directory the first time (see
// Ensure; .ci/test runs cmd ensurenodeop before the tests).
package nodeop

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	_ "embed"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/certgen"
)

// ClientID is the public client registered for `modgate login`.
const ClientID = "modgate-cli"

var (
	//go:embed package.json
	packageJSON []byte
	//go:embed package-lock.json
	packageLock []byte
	//go:embed op.mjs
	opScript []byte
)

// Ensure installs the pinned oidc-provider with `npm ci` into
// <user cache dir>/modgate/nodeop/<hash of the lock file>, unless it is there
// already, and returns that directory. It prints one line to w when it
// installs. Concurrent callers (test processes) install into temporary
// directories and the first rename wins.
func Ensure(w io.Writer) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("nodeop: %w", err)
	}
	sum := sha256.Sum256(append(append([]byte(nil), packageLock...), packageJSON...))
	dir := filepath.Join(cache, "modgate", "nodeop", hex.EncodeToString(sum[:6]))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); err == nil {
		return dir, nil
	}
	for _, tool := range []string{"node", "npm"} {
		if _, err := exec.LookPath(tool); err != nil {
			return "", fmt.Errorf("nodeop: %s not found (install Node.js 20.19+ and npm): %w", tool, err)
		}
	}
	if err := checkNodeVersion(); err != nil {
		return "", err
	}
	if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
		return "", fmt.Errorf("nodeop: %w", err)
	}
	tmp, err := os.MkdirTemp(filepath.Dir(dir), ".install-")
	if err != nil {
		return "", fmt.Errorf("nodeop: %w", err)
	}
	defer os.RemoveAll(tmp) // after a successful rename there is nothing left
	for name, data := range map[string][]byte{"package.json": packageJSON, "package-lock.json": packageLock} {
		if err := os.WriteFile(filepath.Join(tmp, name), data, 0o644); err != nil {
			return "", fmt.Errorf("nodeop: %w", err)
		}
	}
	fmt.Fprintf(w, "nodeop: installing npm oidc-provider (package-lock.json, npm ci) into %s\n", dir)
	cmd := exec.Command("npm", "ci", "--no-audit", "--no-fund", "--ignore-scripts", "--loglevel=error")
	cmd.Dir = tmp
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("nodeop: npm ci: %v\n%s", err, out)
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(filepath.Join(dir, "node_modules", "oidc-provider", "package.json")); serr == nil {
			return dir, nil // another process won the race
		}
		return "", fmt.Errorf("nodeop: %w", err)
	}
	return dir, nil
}

// checkNodeVersion refuses a Node.js older than oidc-provider 9 supports
// (20.19: require of ES modules), with a message saying so, rather than let
// the provider fail in an obscure way.
func checkNodeVersion() error {
	out, err := exec.Command("node", "--version").Output()
	if err != nil {
		return fmt.Errorf("nodeop: node --version: %w", err)
	}
	v := strings.TrimSpace(string(out))
	var major, minor int
	if _, err := fmt.Sscanf(v, "v%d.%d", &major, &minor); err != nil {
		return fmt.Errorf("nodeop: node --version printed %q", v)
	}
	if major < 20 || major == 20 && minor < 19 {
		return fmt.Errorf("nodeop: Node.js %s is too old for oidc-provider 9: install 20.19 or later (e.g. from nodesource)", v)
	}
	return nil
}

var (
	ensureOnce sync.Once
	ensureDir  string
	ensureErr  error
)

// Options configure a provider.
type Options struct {
	// IDTokenTTL is the ID tokens' lifetime (default 5 minutes).
	IDTokenTTL time.Duration
	// AccessTokenTTL is the access tokens' lifetime (default IDTokenTTL).
	AccessTokenTTL time.Duration
}

// Provider is a running oidc-provider.
type Provider struct {
	t      testing.TB
	issuer string
	caFile string
	client *http.Client
}

// Start installs (if needed) and starts a provider, stopped when the test ends.
func Start(t testing.TB, opts Options) *Provider {
	t.Helper()
	ensureOnce.Do(func() { ensureDir, ensureErr = Ensure(os.Stderr) })
	if ensureErr != nil {
		t.Fatal(ensureErr)
	}
	if opts.IDTokenTTL == 0 {
		opts.IDTokenTTL = 5 * time.Minute
	}
	if opts.AccessTokenTTL == 0 {
		opts.AccessTokenTTL = opts.IDTokenTTL
	}
	ca, err := certgen.NewCA("nodeop test IdP CA")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.IssueServer([]string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	p := &Provider{t: t, caFile: filepath.Join(tmp, "ca.pem")}
	certFile, keyFile := filepath.Join(tmp, "server.pem"), filepath.Join(tmp, "server.key")
	for path, data := range map[string][]byte{p.caFile: ca.CertPEM, certFile: leaf.CertPEM, keyFile: leaf.KeyPEM} {
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	p.client = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool()}}}
	// The script runs from the install directory, where node resolves
	// oidc-provider, named by its hash so that test processes built from
	// different versions of it do not clash.
	scriptSum := sha256.Sum256(opScript)
	script := filepath.Join(ensureDir, "op-"+hex.EncodeToString(scriptSum[:6])+".mjs")
	if _, err := os.Stat(script); err != nil {
		tmpScript := script + fmt.Sprintf(".%d.tmp", os.Getpid())
		if err := os.WriteFile(tmpScript, opScript, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(tmpScript, script); err != nil {
			t.Fatal(err)
		}
	}
	conf, _ := json.Marshal(map[string]any{
		"certFile": certFile, "keyFile": keyFile, "clientId": ClientID,
		"idTokenTTL": int(opts.IDTokenTTL.Seconds()), "accessTokenTTL": int(opts.AccessTokenTTL.Seconds()),
	})
	cmd := exec.Command("node", script)
	cmd.Dir = ensureDir
	cmd.Env = append(os.Environ(), "NODEOP_CONFIG="+string(conf), "NODE_ENV=production")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var stderr lockedBuffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatalf("nodeop: starting node: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		stdin.Close() // op.mjs exits when stdin ends
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if t.Failed() && stderr.Len() > 0 {
			t.Logf("nodeop stderr:\n%s", stderr.String())
		}
	})
	first := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			first <- sc.Text()
		}
		close(first)
		io.Copy(io.Discard, stdout)
	}()
	select {
	case line, ok := <-first:
		var hello struct{ Issuer string }
		if !ok || json.Unmarshal([]byte(line), &hello) != nil || hello.Issuer == "" {
			t.Fatalf("nodeop: the provider did not start (%q):\n%s", line, stderr.String())
		}
		p.issuer = hello.Issuer
	case <-time.After(60 * time.Second):
		t.Fatalf("nodeop: the provider did not start within 60s:\n%s", stderr.String())
	}
	return p
}

// Issuer returns the issuer URL (https://127.0.0.1:port).
func (p *Provider) Issuer() string { return p.issuer }

// ClientID returns the id of the public client registered for the device flow.
func (p *Provider) ClientID() string { return ClientID }

// CAFile returns the path of the PEM file holding the CA that issued the
// provider's TLS certificate (and no other).
func (p *Provider) CAFile() string { return p.caFile }

// HTTPClient returns a client that trusts the provider's CA.
func (p *Provider) HTTPClient() *http.Client { return p.client }

// State is what the provider reports about itself.
type State struct {
	KeyID            string `json:"kid"`          // the current signing key
	DeviceScopes     string `json:"deviceScopes"` // the scope of the last device authorization request
	UserinfoRequests int    `json:"userinfoRequests"`
}

// State returns the provider's state.
func (p *Provider) State() State {
	p.t.Helper()
	var s State
	p.control(http.MethodGet, "/__test/state", &s)
	return s
}

// RotateKeys signs with a new key from now on and returns its kid; the
// previous keys stay published, as IdPs do during a rotation.
func (p *Provider) RotateKeys() string {
	p.t.Helper()
	var s State
	p.control(http.MethodPost, "/__test/rotate", &s)
	return s.KeyID
}

// RetireOldKeys unpublishes every key but the current signing key.
func (p *Provider) RetireOldKeys() {
	p.t.Helper()
	p.control(http.MethodPost, "/__test/retire", nil)
}

func (p *Provider) control(method, path string, v any) {
	p.t.Helper()
	req, _ := http.NewRequest(method, p.issuer+path, nil)
	resp, err := p.client.Do(req)
	if err != nil {
		p.t.Fatalf("nodeop: %s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		p.t.Fatalf("nodeop: %s %s: %s\n%s", method, path, resp.Status, body)
	}
	if v != nil {
		if err := json.Unmarshal(body, v); err != nil {
			p.t.Fatalf("nodeop: %s %s: %v", method, path, err)
		}
	}
}

var (
	formRE   = regexp.MustCompile(`(?s)<form[^>]*action="([^"]*)"[^>]*>(.*?)</form>`)
	hiddenRE = regexp.MustCompile(`<input type="hidden" name="([^"]+)" value="([^"]*)"/?>`)
)

// ApproveDevice does in one browser session what the user does after opening
// the verification URL `modgate login` printed (verification_uri_complete):
// the provider's form posts, its confirmation page ("Continue"), the sign-in
// form as login, a member of groups, and consent to the requested scopes.
func (p *Provider) ApproveDevice(ctx context.Context, verificationURI, login string, groups []string) error {
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Transport: p.client.Transport, Jar: jar, Timeout: 30 * time.Second}
	do := func(method, u string, form url.Values) (*http.Response, string, error) {
		var body io.Reader
		if form != nil {
			body = strings.NewReader(form.Encode())
		}
		req, err := http.NewRequestWithContext(ctx, method, u, body)
		if err != nil {
			return nil, "", err
		}
		if form != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := c.Do(req)
		if err != nil {
			return nil, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		if resp.StatusCode != http.StatusOK {
			return nil, "", fmt.Errorf("nodeop: %s %s: %s\n%s", method, u, resp.Status, b)
		}
		return resp, string(b), nil
	}
	// submit posts the page's form with its hidden fields (what the page's
	// script or its "Continue" button does).
	submit := func(page string, base *url.URL) (*http.Response, string, error) {
		m := formRE.FindStringSubmatch(page)
		if m == nil {
			return nil, "", fmt.Errorf("nodeop: no form on the page:\n%s", page)
		}
		action, err := base.Parse(html.UnescapeString(m[1]))
		if err != nil {
			return nil, "", err
		}
		form := url.Values{}
		for _, f := range hiddenRE.FindAllStringSubmatch(m[2], -1) {
			form.Set(html.UnescapeString(f[1]), html.UnescapeString(f[2]))
		}
		return do(http.MethodPost, action.String(), form)
	}
	resp, page, err := do(http.MethodGet, verificationURI, nil) // auto-submitting form with the code
	if err != nil {
		return err
	}
	if resp, page, err = submit(page, resp.Request.URL); err != nil { // the confirmation page
		return err
	}
	if !strings.Contains(page, "op.deviceConfirmForm") {
		return fmt.Errorf("nodeop: expected the device confirmation page, got:\n%s", page)
	}
	if resp, page, err = submit(page, resp.Request.URL); err != nil { // Continue → the sign-in form
		return err
	}
	if !strings.Contains(resp.Request.URL.Path, "/interaction/") {
		return fmt.Errorf("nodeop: expected the sign-in form, got %s:\n%s", resp.Request.URL, page)
	}
	_, page, err = do(http.MethodPost, resp.Request.URL.String(), url.Values{"login": {login}, "groups": {strings.Join(groups, ",")}})
	if err != nil {
		return err
	}
	if !strings.Contains(page, "Sign-in Success") {
		return fmt.Errorf("nodeop: the device was not approved:\n%s", page)
	}
	return nil
}

// WaitForApproval reads `modgate login` output from r until it prints the
// verification URL, approves it as login with groups, and keeps draining r.
// It is for tests that run `modgate login` as a separate process.
func (p *Provider) WaitForApproval(ctx context.Context, r io.Reader, login string, groups []string) error {
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, p.issuer+"/device") {
			go io.Copy(io.Discard, r)
			return p.ApproveDevice(ctx, line, login, groups)
		}
	}
	return errors.New("nodeop: the login printed no verification URL")
}

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func (l *lockedBuffer) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Len()
}
