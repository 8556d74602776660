// Package console is modgate's web console at /ui for auditors and the security
// team: pull history with filters, paging and CSV export, module and subject
// pages, the policy in force with a what-if form, and health. Pages are rendered
// on the server with html/template and work without JavaScript; templates and CSS
// are embedded in the binary.
//
// Callers are identified by a verified client certificate or by an OIDC sign-in
// (authorization code with PKCE) whose result is kept in a sealed session cookie.
// Every page needs the policy to allow the caller audit.read: the console only
// reads, and the what-if form evaluates the policy without acting on it.
package console

import (
	"context"
	"crypto/rand"
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
)

// Prefix is where the console is mounted.
const Prefix = "/ui"

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Policy decides requests; *policy.Engine implements it.
type Policy interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
}

// TokenVerifier verifies an ID token and maps it to an identity;
// *auth.OIDCVerifier (configured with the console's client id as audience)
// implements it.
type TokenVerifier interface {
	Verify(ctx context.Context, raw string) (*identity.Identity, error)
}

// Auditor records the console's own reads of the audit trail; *audit.Writer
// implements it.
type Auditor interface {
	Record(ev audit.Event) error
}

// OIDC configures sign-in with the authorization-code flow.
type OIDC struct {
	Issuer   string
	ClientID string
	// ClientSecret makes the client confidential; empty: a public client that
	// relies on PKCE.
	ClientSecret string
	RedirectURL  string
	Scopes       []string
	// Verifier checks the ID token (signature, issuer, audience = ClientID,
	// expiry) and maps its claims to teams as the rest of modgate does.
	Verifier TokenVerifier
	// HTTPClient talks to the IdP; nil: http.DefaultClient.
	HTTPClient *http.Client
}

// Options are the console's dependencies.
type Options struct {
	Logger *slog.Logger
	// OIDC enables sign-in; nil: client certificates only.
	OIDC *OIDC
	// SessionKey seals session cookies (at least 32 bytes). Replicas must share
	// it; nil: a random key, so sessions end when the process does.
	SessionKey []byte
	SessionTTL time.Duration
	// CertIdentity returns the identity of a verified client certificate, nil
	// when the request has none.
	CertIdentity func(*http.Request) (*identity.Identity, error)
	// Policy gates every page (audit.read) and answers the what-if form; nil
	// allows every identified caller.
	Policy Policy
	// PolicyStatus reports the policy in force; nil: no policy engine.
	PolicyStatus func() policy.Status
	// PolicyDir is the policy directory whose files the policy page shows.
	PolicyDir string
	// Route tells private modules from public ones, for the what-if form.
	Route func(module string) policy.Route
	// DB is the audit trail; nil: the history pages say it is off.
	DB audit.DB
	// Audit records the console's searches and exports; nil: not recorded.
	Audit   Auditor
	Replica string
	// Gatherer is the Prometheus registry the health page reads.
	Gatherer prometheus.Gatherer
	// Now is the clock; nil: time.Now.
	Now func() time.Time
	// Affected answers the advisory page (who pulled affected versions); nil:
	// the page says it needs the audit trail and the vulnerability database.
	Affected func(ctx context.Context, id string) ([]audit.Exposure, error)
}

// Console is the console's HTTP handler.
type Console struct {
	opts   Options
	log    *slog.Logger
	keys   *keys
	pages  map[string]*template.Template
	mux    *http.ServeMux
	static http.Handler
	oidc   *oidcClient
	now    func() time.Time
}

// New builds the console.
func New(opts Options) (*Console, error) {
	c := &Console{opts: opts, log: opts.Logger, now: opts.Now}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	if c.opts.SessionTTL <= 0 {
		c.opts.SessionTTL = 8 * time.Hour
	}
	key := opts.SessionKey
	if key == nil {
		key = make([]byte, 32)
		rand.Read(key)
	}
	var err error
	if c.keys, err = deriveKeys(key); err != nil {
		return nil, err
	}
	if opts.OIDC != nil {
		c.oidc = newOIDCClient(*opts.OIDC)
	}
	if c.pages, err = parsePages(); err != nil {
		return nil, err
	}
	sub, err := fs.Sub(staticFS, "static")
	if err != nil {
		return nil, err
	}
	c.static = http.StripPrefix(Prefix+"/static/", http.FileServerFS(sub))
	c.mux = http.NewServeMux()
	c.routes()
	return c, nil
}

func (c *Console) routes() {
	m := c.mux
	m.HandleFunc("GET "+Prefix+"/{$}", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/events", http.StatusFound)
	})
	m.HandleFunc("GET "+Prefix, func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, Prefix+"/events", http.StatusFound)
	})
	m.HandleFunc("GET "+Prefix+"/static/", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		c.static.ServeHTTP(w, r)
	})
	m.HandleFunc("GET "+Prefix+"/signin", c.handleSignIn)
	m.HandleFunc("GET "+Prefix+"/login", c.handleLogin)
	m.HandleFunc("GET "+Prefix+"/callback", c.handleCallback)
	// Signing out needs only the session and its CSRF token: a caller the
	// policy refuses must still be able to end their session.
	m.Handle("POST "+Prefix+"/logout", c.signedIn(c.handleLogout))
	m.Handle("GET "+Prefix+"/events", c.authorized(c.handleEvents))
	m.Handle("GET "+Prefix+"/events.csv", c.authorized(c.handleExport))
	// Module paths and subjects go in the query: subjects may be URIs
	// (spiffe://corp/...) whose "//" a path would not survive.
	m.Handle("GET "+Prefix+"/module", c.authorized(c.handleModule))
	m.Handle("GET "+Prefix+"/subject", c.authorized(c.handleSubject))
	m.Handle("GET "+Prefix+"/policy", c.authorized(c.handlePolicy))
	m.Handle("GET "+Prefix+"/policy/files/{file...}", c.authorized(c.handlePolicyFile))
	m.Handle("POST "+Prefix+"/policy/what-if", c.authorized(c.handleWhatIf))
	m.Handle("GET "+Prefix+"/health", c.authorized(c.handleHealth))
	m.Handle("GET "+Prefix+"/affected", c.authorized(c.handleAffected))
	m.Handle("GET "+Prefix+"/affected.csv", c.authorized(c.handleAffectedExport))
}

// ServeHTTP serves the console under Prefix with its security headers.
func (c *Console) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	// No script at all: the console works without JavaScript, so none may run.
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "same-origin")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	if !strings.HasPrefix(r.URL.Path, Prefix+"/static/") {
		h.Set("Cache-Control", "no-store")
	}
	c.mux.ServeHTTP(w, r)
}

// caller is the request's verified identity and what binds its forms.
type caller struct {
	ID      *identity.Identity
	CSRF    string // token for this caller's POST forms
	binding string
}

type callerKey struct{}

func callerFrom(ctx context.Context) *caller {
	cl, _ := ctx.Value(callerKey{}).(*caller)
	return cl
}

// identify returns the caller: a verified client certificate first (no sign-in
// needed), then the session cookie. nil means nobody signed in.
func (c *Console) identify(r *http.Request) (*caller, error) {
	if c.opts.CertIdentity != nil {
		id, err := c.opts.CertIdentity(r)
		if err != nil {
			return nil, err
		}
		if id != nil {
			b := "cert:" + id.CertFingerprint
			if id.CertFingerprint == "" {
				b = "cert-subject:" + id.Subject
			}
			return &caller{ID: id, binding: b, CSRF: c.keys.csrfToken(b)}, nil
		}
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil {
		return nil, nil
	}
	var s session
	if err := open(c.keys.session, sessionCookie, ck.Value, &s); err != nil {
		return nil, nil // a stale key or a forged cookie: sign in again
	}
	if c.now().Unix() >= s.Expires || s.ID == "" {
		return nil, nil
	}
	b := "session:" + s.ID
	return &caller{ID: s.identity(), binding: b, CSRF: c.keys.csrfToken(b)}, nil
}

// authorized admits callers the policy allows audit.read, and checks the CSRF
// token of every POST.
func (c *Console) authorized(next http.HandlerFunc) http.Handler {
	return c.checked(true, next)
}

// signedIn admits any identified caller, checking the CSRF token of every POST.
func (c *Console) signedIn(next http.HandlerFunc) http.Handler {
	return c.checked(false, next)
}

func (c *Console) checked(needAuditRead bool, next http.HandlerFunc) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cl, err := c.identify(r)
		if err != nil {
			c.renderError(w, r, http.StatusUnauthorized, "Your client certificate was refused", err.Error(), nil)
			return
		}
		if cl == nil {
			if r.Method != http.MethodGet {
				c.renderError(w, r, http.StatusUnauthorized, "Signed out", "Your session ended; sign in again.", nil)
				return
			}
			http.Redirect(w, r, Prefix+"/signin?next="+urlQueryEscape(r.URL.RequestURI()), http.StatusSeeOther)
			return
		}
		if r.Method == http.MethodPost {
			// The token binds the form to this caller; the Origin check refuses a
			// cross-site post even before the token is looked at.
			if o := r.Header.Get("Origin"); o != "" && o != "null" && !sameOrigin(o, r) {
				c.renderError(w, r, http.StatusForbidden, "Form refused", "The form was posted from another site.", cl)
				return
			}
			if !c.keys.validCSRF(cl.binding, r.PostFormValue("csrf")) {
				c.renderError(w, r, http.StatusForbidden, "Form refused", "The form's security token is missing or belongs to another session. Reload the page and try again.", cl)
				return
			}
		}
		if needAuditRead && c.opts.Policy != nil {
			in := policy.NewInput(cl.ID, policy.ActionAuditRead)
			in.ClientAddr = clientIP(r)
			d, err := c.opts.Policy.Decide(r.Context(), in)
			if err != nil {
				c.log.Error("console: policy", "err", err)
				c.renderError(w, r, http.StatusServiceUnavailable, "Policy unavailable", "The policy could not be evaluated; try again shortly.", cl)
				return
			}
			if !d.Allow {
				c.record(r.WithContext(contextWithCaller(r, cl)), audit.OutcomeDenied, http.StatusForbidden, d)
				c.renderError(w, r, http.StatusForbidden, "Not allowed", d.Reason(), cl)
				return
			}
		}
		next(w, r.WithContext(context.WithValue(r.Context(), callerKey{}, cl)))
	})
}

func sameOrigin(origin string, r *http.Request) bool {
	scheme := "https"
	if r.TLS == nil {
		scheme = "http"
	}
	return origin == scheme+"://"+r.Host
}

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

// recordRead records a search, page view or export in the audit trail as the
// HTTP API's audit reads are: who read the trail is itself audited. Like the
// API's rows it names no module — the module column means the module acted on,
// and a search for one must not show up among that module's pulls.
func (c *Console) recordRead(r *http.Request) {
	c.record(r, audit.OutcomeServed, http.StatusOK, policy.Decision{})
}

// record writes an audit-read event: a read served, or a caller the policy
// refused (with the decision that refused it).
func (c *Console) record(r *http.Request, outcome audit.Outcome, status int, d policy.Decision) {
	if c.opts.Audit == nil {
		return
	}
	ev := audit.Event{
		Action:     audit.ActionAuditRead,
		Outcome:    outcome,
		Status:     status,
		DecisionID: d.ID,
		ClientAddr: clientIP(r),
		UserAgent:  r.UserAgent(),
		Source:     "console",
		Replica:    c.opts.Replica,
	}
	if !d.Allow && d.ID != "" {
		ev.Reason = d.Reason()
	}
	if cl := callerFrom(r.Context()); cl != nil {
		ev.SetIdentity(cl.ID)
	}
	if err := c.opts.Audit.Record(ev); err != nil {
		c.log.Error("console: audit read not recorded", "err", err)
	}
}

var errNoAudit = errors.New("the audit trail is not enabled on this modgate (no database)")

func contextWithCaller(r *http.Request, cl *caller) context.Context {
	return context.WithValue(r.Context(), callerKey{}, cl)
}
