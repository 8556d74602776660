package console

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
)

// newConsole builds a console over the shipped policy (auditor team
// security-audit) that treats a request header as its client certificate, so
// tests can be any caller.
func newConsole(t *testing.T, now time.Time) *Console {
	t.Helper()
	eng, err := policy.Load(context.Background(), "../../policy", policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	c, err := New(Options{
		Policy:       eng,
		PolicyStatus: eng.Status,
		PolicyDir:    "../../policy",
		SessionKey:   []byte("0123456789abcdef0123456789abcdef"),
		SessionTTL:   time.Hour,
		Now:          func() time.Time { return now },
		CertIdentity: func(r *http.Request) (*identity.Identity, error) {
			if r.TLS == nil || len(r.Header["X-Test-Cert"]) == 0 {
				return nil, nil
			}
			sub, team, _ := strings.Cut(r.Header.Get("X-Test-Cert"), "/")
			return &identity.Identity{Subject: sub, Teams: []string{team}, Method: identity.MethodMTLS, CertFingerprint: "fp-" + sub}, nil
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func serve(c *Console, r *http.Request) *httptest.ResponseRecorder {
	r.TLS = &tls.ConnectionState{}
	w := httptest.NewRecorder()
	c.ServeHTTP(w, r)
	return w
}

func sessionCookieFor(t *testing.T, c *Console, s session) *http.Cookie {
	t.Helper()
	v, err := seal(c.keys.session, sessionCookie, s)
	if err != nil {
		t.Fatal(err)
	}
	return &http.Cookie{Name: sessionCookie, Value: v}
}

func TestAccess(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newConsole(t, now)
	ann := session{ID: "s1", Subject: "ann", Teams: []string{"security-audit"}, Method: identity.MethodOIDC, Expires: now.Add(time.Hour).Unix()}
	tests := []struct {
		name         string
		cert         string
		cookie       func() *http.Cookie
		wantStatus   int
		wantLocation string
		wantBody     string
	}{
		{name: "fail/signed-out-goes-to-signin", wantStatus: http.StatusSeeOther, wantLocation: "/ui/signin?next=%2Fui%2Fpolicy"},
		{name: "ok/auditor-session", cookie: func() *http.Cookie { return sessionCookieFor(t, c, ann) }, wantStatus: http.StatusOK, wantBody: "What if"},
		{name: "ok/auditor-certificate", cert: "carl/security-audit", wantStatus: http.StatusOK, wantBody: "Signed in as <strong id=\"whoami\">carl</strong>"},
		{name: "fail/developer-certificate", cert: "dev/payments", wantStatus: http.StatusForbidden, wantBody: "may not read the audit trail"},
		{name: "fail/expired-session", cookie: func() *http.Cookie {
			s := ann
			s.Expires = now.Add(-time.Second).Unix()
			return sessionCookieFor(t, c, s)
		}, wantStatus: http.StatusSeeOther, wantLocation: "/ui/signin?next=%2Fui%2Fpolicy"},
		{name: "fail/forged-session", cookie: func() *http.Cookie {
			ck := sessionCookieFor(t, c, ann)
			ck.Value = ck.Value[:len(ck.Value)-2] + "AA"
			return ck
		}, wantStatus: http.StatusSeeOther, wantLocation: "/ui/signin?next=%2Fui%2Fpolicy"},
		{name: "fail/login-state-as-session", cookie: func() *http.Cookie {
			v, _ := seal(c.keys.login, loginCookie, ann)
			return &http.Cookie{Name: sessionCookie, Value: v}
		}, wantStatus: http.StatusSeeOther, wantLocation: "/ui/signin?next=%2Fui%2Fpolicy"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			r := httptest.NewRequest("GET", "https://modgate.test/ui/policy", nil)
			if tt.cert != "" {
				r.Header.Set("X-Test-Cert", tt.cert)
			}
			if tt.cookie != nil {
				r.AddCookie(tt.cookie())
			}
			w := serve(c, r)
			if w.Code != tt.wantStatus {
				t.Fatalf("status %d, want %d\n%s", w.Code, tt.wantStatus, w.Body)
			}
			if got := w.Header().Get("Location"); got != tt.wantLocation {
				t.Errorf("Location %q, want %q", got, tt.wantLocation)
			}
			if !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Errorf("body lacks %q:\n%s", tt.wantBody, w.Body)
			}
		})
	}
}

func TestSecurityHeaders(t *testing.T) {
	t.Parallel()
	c := newConsole(t, time.Now())
	for _, path := range []string{"/ui/signin", "/ui/policy", "/ui/static/console.css", "/ui/nope"} {
		w := serve(c, httptest.NewRequest("GET", "https://modgate.test"+path, nil))
		h := w.Header()
		want := map[string]string{
			"Content-Security-Policy": "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
			"X-Frame-Options":         "DENY",
			"Referrer-Policy":         "same-origin",
			"X-Content-Type-Options":  "nosniff",
		}
		for k, v := range want {
			if h.Get(k) != v {
				t.Errorf("%s: %s = %q, want %q", path, k, h.Get(k), v)
			}
		}
	}
	w := serve(c, httptest.NewRequest("GET", "https://modgate.test/ui/static/console.css", nil))
	if w.Code != 200 || !strings.HasPrefix(w.Header().Get("Content-Type"), "text/css") {
		t.Errorf("stylesheet: %d %s", w.Code, w.Header().Get("Content-Type"))
	}
}

// The what-if form is a POST bound to the caller by its CSRF token.
func TestWhatIfCSRF(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newConsole(t, now)
	ann := session{ID: "s1", Subject: "ann", Teams: []string{"security-audit"}, Method: identity.MethodOIDC, Expires: now.Add(time.Hour).Unix()}
	form := url.Values{"subject": {"bob"}, "teams": {"payments"}, "method": {"oidc"}, "action": {"zip"}, "module": {"corp.example/payments/ledger"}, "version": {"v1.0.0"}}
	tests := []struct {
		name       string
		csrf       string
		origin     string
		wantStatus int
		wantBody   string
	}{
		{name: "ok/token-of-this-session", csrf: c.keys.csrfToken("session:s1"), wantStatus: 200, wantBody: `id="verdict"`},
		{name: "fail/no-token", wantStatus: 403, wantBody: "security token is missing"},
		{name: "fail/token-of-another-session", csrf: c.keys.csrfToken("session:s2"), wantStatus: 403, wantBody: "security token is missing"},
		{name: "fail/cross-site-origin", csrf: c.keys.csrfToken("session:s1"), origin: "https://evil.example", wantStatus: 403, wantBody: "posted from another site"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			f := url.Values{"csrf": {tt.csrf}}
			for k, v := range form {
				f[k] = v
			}
			r := httptest.NewRequest("POST", "https://modgate.test/ui/policy/what-if", strings.NewReader(f.Encode()))
			r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			if tt.origin != "" {
				r.Header.Set("Origin", tt.origin)
			}
			r.AddCookie(sessionCookieFor(t, c, ann))
			w := serve(c, r)
			if w.Code != tt.wantStatus || !strings.Contains(w.Body.String(), tt.wantBody) {
				t.Fatalf("status %d, want %d with %q:\n%s", w.Code, tt.wantStatus, tt.wantBody, w.Body)
			}
		})
	}
}

func TestSafeNext(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/ui/module?path=x":     "/ui/module?path=x",
		"https://evil.example/": "/ui/events",
		"//evil.example/ui/":    "/ui/events",
		"/ui\\@evil":            "/ui/events",
		"/metrics":              "/ui/events",
		"":                      "/ui/events",
	}
	for in, want := range tests {
		if got := safeNext(in); got != want {
			t.Errorf("safeNext(%q) = %q, want %q", in, got, want)
		}
	}
}

// A policy file outside the listing is never served.
func TestPolicyFileTraversal(t *testing.T) {
	t.Parallel()
	c := newConsole(t, time.Now())
	for path, want := range map[string]int{
		"/ui/policy/files/settings.yaml":        200,
		"/ui/policy/files/../../go.mod":         404,
		"/ui/policy/files/%2e%2e/%2e%2e/go.mod": 404,
		"/ui/policy/files/README.md":            404,
	} {
		r := httptest.NewRequest("GET", "https://modgate.test/ui/signin", nil)
		r.URL.Path, r.URL.RawPath = path, ""
		if u, err := url.Parse("https://modgate.test" + path); err == nil {
			r.URL = u
		}
		r.Header.Set("X-Test-Cert", "carl/security-audit")
		w := serve(c, r)
		if strings.Contains(w.Body.String(), "module github.com/modgate/modgate") {
			t.Errorf("%s served a file outside the policy directory", path)
		}
		// ServeMux redirects a path with ".." to its clean form, outside /ui.
		if got := w.Code; got != want && !(want == 404 && (got == http.StatusTemporaryRedirect || got == http.StatusMovedPermanently)) {
			t.Errorf("%s: status %d, want %d", path, got, want)
		}
	}
}

type events []audit.Event

func (e *events) Record(ev audit.Event) error { *e = append(*e, ev); return nil }

// A refused caller is itself an audit-trail row, with the policy's reason.
func TestRefusalAudited(t *testing.T) {
	t.Parallel()
	c := newConsole(t, time.Now())
	var got events
	c.opts.Audit = &got
	r := httptest.NewRequest("GET", "https://modgate.test/ui/events", nil)
	r.Header.Set("X-Test-Cert", "dev/payments")
	if w := serve(c, r); w.Code != http.StatusForbidden {
		t.Fatalf("status %d", w.Code)
	}
	if len(got) != 1 || got[0].Action != audit.ActionAuditRead || got[0].Outcome != audit.OutcomeDenied || got[0].Subject != "dev" || got[0].DecisionID == "" || !strings.Contains(got[0].Reason, "may not read the audit trail") {
		t.Errorf("recorded %+v", got)
	}
}

// A caller the policy refuses can still end their session.
func TestRefusedCallerSignsOut(t *testing.T) {
	t.Parallel()
	now := time.Now()
	c := newConsole(t, now)
	dev := session{ID: "s9", Subject: "dev", Teams: []string{"payments"}, Method: identity.MethodOIDC, Expires: now.Add(time.Hour).Unix()}
	f := url.Values{"csrf": {c.keys.csrfToken("session:s9")}}
	r := httptest.NewRequest("POST", "https://modgate.test/ui/logout", strings.NewReader(f.Encode()))
	r.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	r.AddCookie(sessionCookieFor(t, c, dev))
	w := serve(c, r)
	if w.Code != http.StatusSeeOther {
		t.Fatalf("status %d:\n%s", w.Code, w.Body)
	}
	ck := w.Result().Cookies()
	if len(ck) != 1 || ck[0].Name != sessionCookie || ck[0].MaxAge >= 0 || !ck[0].Secure || !ck[0].HttpOnly || ck[0].SameSite != http.SameSiteLaxMode || ck[0].Path != "/" {
		t.Errorf("sign-out cookie: %+v", ck)
	}
}
