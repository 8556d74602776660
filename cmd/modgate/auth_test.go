package main

import (
	"context"
	"flag"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/testing/oidctest"
)

// parseGOAUTH parses a GOAUTH helper's output as the go command does
// (cmd/go/internal/auth/userauth.go): URL lines, blank, header lines, blank.
func parseGOAUTH(t *testing.T, out string) map[string]http.Header {
	t.Helper()
	creds := map[string]http.Header{}
	data := out
	for data != "" {
		var urls []string
		for {
			line, rest, ok := strings.Cut(data, "\n")
			if !ok {
				t.Fatalf("missing blank line after URLs in %q", out)
			}
			data = rest
			if line == "" {
				break
			}
			if !strings.HasPrefix(line, "https://") {
				t.Fatalf("bad URL line %q", line)
			}
			urls = append(urls, line)
		}
		h := http.Header{}
		for {
			line, rest, ok := strings.Cut(data, "\n")
			if !ok {
				t.Fatalf("missing blank line after headers in %q", out)
			}
			data = rest
			if line == "" {
				break
			}
			k, v, ok := strings.Cut(line, ": ")
			if !ok {
				t.Fatalf("bad header line %q", line)
			}
			h.Add(k, v)
		}
		for _, u := range urls {
			creds[u] = h
		}
	}
	return creds
}

func TestRunAuth(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	const proxy = "https://modgate.test:8443"
	_, credPath, _ := loginSession(t, p, proxy)
	creds, _ := login.LoadCredentials(credPath)
	first := creds[0].IDToken
	ca := p.CAFile(t)
	a := newTestAuthenticator(t, p)

	run := func(stdin string, args ...string) string {
		t.Helper()
		var out, errOut strings.Builder
		args = append([]string{"--credentials", credPath, "--ca-file", ca}, args...)
		if err := authMain(context.Background(), args, strings.NewReader(stdin), &out, &errOut); err != nil {
			t.Fatalf("modgate auth %v: %v\n%s", args, err, errOut.String())
		}
		return out.String()
	}
	bearer := func(out string) string {
		t.Helper()
		h, ok := parseGOAUTH(t, out)[proxy]
		if !ok {
			t.Fatalf("no credentials for %s in %q", proxy, out)
		}
		r, _ := http.NewRequest(http.MethodGet, proxy+"/x/@v/list", nil)
		r.RemoteAddr = "127.0.0.1:1"
		r.Header.Set("Authorization", h.Get("Authorization"))
		// Basic: the access token as login, the ID token as password, as
		// the go command sends the .netrc entry modgate login writes.
		at, tok, ok := r.BasicAuth()
		if !ok || at == "" || at == login.NetrcLogin {
			t.Fatalf("Authorization = %q, want Basic access-token:id-token", h.Get("Authorization"))
		}
		if _, err := a.Authenticate(r); err != nil {
			t.Fatalf("modgate refuses the helper's token: %v", err)
		}
		return tok
	}

	// First call, no URL: the cached token, no refresh.
	if got := bearer(run("")); got != first {
		t.Error("valid cached token was not used as is")
	}
	// The proxy answered 401: refresh.
	refreshed := bearer(run("HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n", proxy+"/github.com/x/y/@v/list"))
	if refreshed == first {
		t.Error("401 did not cause a refresh")
	}
	// The proxy answered 403 (policy): same token, no refresh.
	if got := bearer(run("HTTP/1.1 403 Forbidden\r\n\r\n", proxy+"/github.com/x/y/@v/list")); got != refreshed {
		t.Error("403 caused a refresh")
	}
	// A URL of another host: nothing.
	if out := run("HTTP/1.1 401 Unauthorized\r\n\r\n", "https://proxy.golang.org/x/@v/list"); out != "" {
		t.Errorf("credentials offered to another host: %q", out)
	}
	// A token about to expire is refreshed on the first call.
	c, _ := login.LoadCredentials(credPath)
	c[0].Expiry = time.Now().Add(30 * time.Second)
	login.SaveCredential(credPath, c[0])
	if got := bearer(run("")); got == refreshed {
		t.Error("expiring token was not refreshed")
	}
}

func TestRunAuthHelp(t *testing.T) {
	t.Parallel()
	var out, errOut strings.Builder
	if err := runAuth(context.Background(), []string{"--help"}, &out, &errOut); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(errOut.String(), "usage: modgate auth") {
		t.Errorf("help:\n%s", errOut.String())
	}
}

// TestGOAUTHHelperProcess is not a test: TestGoCommandUsesGOAUTH runs this test
// binary as the GOAUTH command, and this function then acts as `modgate auth`.
func TestGOAUTHHelperProcess(t *testing.T) {
	if os.Getenv("MODGATE_TEST_GOAUTH") != "1" {
		return
	}
	args := append([]string{"--credentials", os.Getenv("MODGATE_TEST_CREDENTIALS"), "--ca-file", os.Getenv("MODGATE_TEST_CA")}, flag.Args()...)
	if err := runAuth(context.Background(), args, os.Stdout, os.Stderr); err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		os.Exit(1)
	}
	os.Exit(0)
}

// TestGoCommandUsesGOAUTH runs the real go command with GOAUTH set as
// documented, the helper before netrc, and a .netrc holding an expired token:
// the go command must send the helper's token, never the .netrc one.
func TestGoCommandUsesGOAUTH(t *testing.T) {
	t.Parallel()
	p := oidctest.Start(t)
	a := newTestAuthenticator(t, p)
	var bearer, refused atomic.Int64
	proxy := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, err := a.Authenticate(r); err != nil {
			refused.Add(1)
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		if u, _, ok := r.BasicAuth(); ok && u != login.NetrcLogin {
			bearer.Add(1) // the helper's credentials: access token and ID token
		}
		switch r.URL.Path {
		case "/example.com/m/@v/list":
			w.Write([]byte("v1.0.0\n"))
		case "/example.com/m/@v/v1.0.0.info", "/example.com/m/@latest":
			w.Write([]byte(`{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}`))
		case "/example.com/m/@v/v1.0.0.mod":
			w.Write([]byte("module example.com/m\n"))
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(proxy.Close)
	_, credPath, _ := loginSession(t, p, proxy.URL)

	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	home := t.TempDir()
	netrcPath := filepath.Join(home, ".netrc")
	expired := p.IssueToken("alice@example.com", nil, oidctest.WithExpiry(time.Now().Add(-time.Minute)))
	os.WriteFile(netrcPath, []byte("machine "+strings.TrimPrefix(proxy.URL, "https://")+" login modgate password "+expired+"\n"), 0o600)
	caPath := filepath.Join(home, "ca.pem")
	os.WriteFile(caPath, append(pemCert(proxy.Certificate().Raw), pemCert(p.Certificate().Raw)...), 0o644)
	goList := func() {
		t.Helper()
		cmd := exec.Command("go", "list", "-m", "-versions", "example.com/m@latest")
		cmd.Dir = home
		cmd.Env = append(os.Environ(),
			"HOME="+home, "NETRC="+netrcPath,
			"GOAUTH="+exe+" -test.run=^TestGOAUTHHelperProcess$;netrc",
			"MODGATE_TEST_GOAUTH=1", "MODGATE_TEST_CREDENTIALS="+credPath, "MODGATE_TEST_CA="+caPath,
			"GOPROXY="+proxy.URL, "GONOSUMDB=*", "GOFLAGS=", "GO111MODULE=on",
			"GOMODCACHE="+t.TempDir(), "GOENV=off", "SSL_CERT_FILE="+caPath,
		)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go list: %v\n%s", err, out)
		}
		if got := strings.TrimSpace(string(out)); got != "example.com/m v1.0.0" {
			t.Errorf("go list printed %q", got)
		}
	}
	goList()
	if bearer.Load() == 0 || refused.Load() != 0 {
		t.Errorf("bearer-authenticated %d, refused %d requests", bearer.Load(), refused.Load())
	}

	// The cached token has expired at the IdP although the file does not know
	// it yet: the proxy answers 401, the go command calls the helper again with
	// the URL and the response, the helper refreshes, the retry succeeds.
	creds, _ := login.LoadCredentials(credPath)
	creds[0].IDToken = p.IssueToken("alice@example.com", nil, oidctest.WithExpiry(time.Now().Add(-time.Minute)))
	login.SaveCredential(credPath, creds[0])
	bearer.Store(0)
	goList()
	if refused.Load() != 1 || bearer.Load() == 0 {
		t.Errorf("after expiry: refused %d (want 1), bearer-authenticated %d", refused.Load(), bearer.Load())
	}
}
