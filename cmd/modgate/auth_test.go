package main

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/oidctest"
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
		tok, ok := strings.CutPrefix(h.Get("Authorization"), "Bearer ")
		if !ok {
			t.Fatalf("Authorization = %q", h.Get("Authorization"))
		}
		r, _ := http.NewRequest(http.MethodGet, proxy+"/x/@v/list", nil)
		r.RemoteAddr = "127.0.0.1:1"
		r.Header.Set("Authorization", "Bearer "+tok)
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
