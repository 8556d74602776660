package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/identity"
)

// loginTTL bounds the time between leaving for the IdP and coming back.
const loginTTL = 10 * time.Minute

// oidcClient runs the authorization-code flow. The IdP's endpoints are
// discovered at the first sign-in, not at start-up, so an IdP outage does not
// stop modgate from serving modules (and certificate users from the console).
type oidcClient struct {
	cfg OIDC

	mu       sync.Mutex
	endpoint *oauth2.Endpoint
}

func newOIDCClient(cfg OIDC) *oidcClient {
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = []string{oidc.ScopeOpenID, "profile", "email", "groups"}
	}
	return &oidcClient{cfg: cfg}
}

func (o *oidcClient) ctx(ctx context.Context) context.Context {
	if o.cfg.HTTPClient == nil {
		return ctx
	}
	return context.WithValue(ctx, oauth2.HTTPClient, o.cfg.HTTPClient)
}

func (o *oidcClient) config(ctx context.Context) (*oauth2.Config, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.endpoint == nil {
		ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		defer cancel()
		p, err := oidc.NewProvider(oidc.ClientContext(ctx, o.cfg.HTTPClient), o.cfg.Issuer)
		if err != nil {
			return nil, fmt.Errorf("console: discovering %s: %w", o.cfg.Issuer, err)
		}
		ep := p.Endpoint()
		o.endpoint = &ep
	}
	return &oauth2.Config{
		ClientID:     o.cfg.ClientID,
		ClientSecret: o.cfg.ClientSecret,
		Endpoint:     *o.endpoint,
		RedirectURL:  o.cfg.RedirectURL,
		Scopes:       o.cfg.Scopes,
	}, nil
}

// safeNext keeps a post-sign-in redirect inside the console: an open redirect
// would let a link to modgate send a freshly signed-in auditor anywhere.
func safeNext(next string) string {
	if !strings.HasPrefix(next, Prefix+"/") || strings.HasPrefix(next, "//") || strings.ContainsAny(next, "\\\r\n") {
		return Prefix + "/events"
	}
	return next
}

func urlQueryEscape(s string) string { return url.QueryEscape(s) }

// handleSignIn shows the sign-in page: a link to the IdP, and a note that a
// client certificate signs in by itself.
func (c *Console) handleSignIn(w http.ResponseWriter, r *http.Request) {
	next := safeNext(r.URL.Query().Get("next"))
	if cl, _ := c.identify(r); cl != nil {
		http.Redirect(w, r, next, http.StatusSeeOther)
		return
	}
	data := struct {
		OIDC   bool
		Issuer string
		Next   string
	}{OIDC: c.oidc != nil, Next: next}
	if c.oidc != nil {
		data.Issuer = c.oidc.cfg.Issuer
	}
	c.render(w, r, http.StatusOK, "signin", "Sign in", data)
}

// handleLogin starts the authorization-code flow with PKCE (RFC 7636) and a
// nonce; state, verifier and nonce travel in a sealed, short-lived cookie.
func (c *Console) handleLogin(w http.ResponseWriter, r *http.Request) {
	if c.oidc == nil {
		c.renderError(w, r, http.StatusNotFound, "No single sign-on", "This modgate has no OIDC sign-in configured; use a client certificate.", nil)
		return
	}
	conf, err := c.oidc.config(r.Context())
	if err != nil {
		c.log.Error("console: sign-in", "err", err)
		c.renderError(w, r, http.StatusServiceUnavailable, "Identity provider unavailable", "The identity provider could not be reached; try again shortly.", nil)
		return
	}
	st := loginState{
		State:    randomString(24),
		Verifier: oauth2.GenerateVerifier(),
		Nonce:    randomString(24),
		Next:     safeNext(r.URL.Query().Get("next")),
		Expires:  c.now().Add(loginTTL).Unix(),
	}
	v, err := seal(c.keys.login, loginCookie, st)
	if err != nil {
		c.renderError(w, r, http.StatusInternalServerError, "Sign-in failed", "internal error", nil)
		return
	}
	setCookie(w, loginCookie, v, c.now().Add(loginTTL))
	http.Redirect(w, r, conf.AuthCodeURL(st.State, oauth2.S256ChallengeOption(st.Verifier), oidc.Nonce(st.Nonce)), http.StatusFound)
}

// handleCallback finishes the flow: checks state against the login cookie,
// redeems the code with the PKCE verifier, verifies the ID token and its nonce,
// and starts the session.
func (c *Console) handleCallback(w http.ResponseWriter, r *http.Request) {
	fail := func(status int, msg string, err error) {
		c.log.Warn("console: sign-in failed", "err", err)
		setCookie(w, loginCookie, "", time.Time{})
		c.renderError(w, r, status, "Sign-in failed", msg, nil)
	}
	if c.oidc == nil {
		fail(http.StatusNotFound, "This modgate has no OIDC sign-in configured.", errors.New("no OIDC"))
		return
	}
	q := r.URL.Query()
	if e := q.Get("error"); e != "" {
		fail(http.StatusUnauthorized, "The identity provider refused the sign-in: "+e, errors.New(e+": "+q.Get("error_description")))
		return
	}
	ck, err := r.Cookie(loginCookie)
	if err != nil {
		fail(http.StatusBadRequest, "The sign-in was not started from this browser, or took too long. Start again.", err)
		return
	}
	var st loginState
	if err := open(c.keys.login, loginCookie, ck.Value, &st); err != nil || c.now().Unix() >= st.Expires {
		fail(http.StatusBadRequest, "The sign-in took too long or was started elsewhere. Start again.", err)
		return
	}
	if q.Get("state") == "" || q.Get("state") != st.State {
		fail(http.StatusBadRequest, "The sign-in response does not match the request. Start again.", errors.New("state mismatch"))
		return
	}
	conf, err := c.oidc.config(r.Context())
	if err != nil {
		fail(http.StatusServiceUnavailable, "The identity provider could not be reached.", err)
		return
	}
	tok, err := conf.Exchange(c.oidc.ctx(r.Context()), q.Get("code"), oauth2.VerifierOption(st.Verifier))
	if err != nil {
		fail(http.StatusUnauthorized, "The identity provider did not accept the sign-in code.", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		fail(http.StatusUnauthorized, "The identity provider returned no ID token.", errors.New("no id_token"))
		return
	}
	// The access token lets the verifier read groups from userinfo when the
	// ID token carries none (auth.oidc.groups_source).
	id, err := c.oidc.cfg.Verifier.Verify(auth.WithAccessToken(r.Context(), tok.AccessToken), raw)
	if err != nil {
		fail(http.StatusUnauthorized, "The ID token was not accepted.", err)
		return
	}
	// The verifier checked the signature, so the payload can be read for the
	// nonce, which binds the token to this browser's sign-in.
	if n, err := tokenNonce(raw); err != nil || n != st.Nonce {
		fail(http.StatusUnauthorized, "The ID token does not belong to this sign-in.", fmt.Errorf("nonce mismatch: %v", err))
		return
	}
	s := session{ID: randomString(18), Subject: id.Subject, Teams: id.Teams, Method: identity.MethodOIDC, Expires: c.now().Add(c.opts.SessionTTL).Unix()}
	v, err := seal(c.keys.session, sessionCookie, s)
	if err != nil {
		fail(http.StatusInternalServerError, "internal error", err)
		return
	}
	setCookie(w, loginCookie, "", time.Time{})
	setCookie(w, sessionCookie, v, time.Unix(s.Expires, 0))
	c.log.Info("console: signed in", "subject", s.Subject, "teams", s.Teams)
	http.Redirect(w, r, st.Next, http.StatusSeeOther)
}

func (c *Console) handleLogout(w http.ResponseWriter, r *http.Request) {
	setCookie(w, sessionCookie, "", time.Time{})
	http.Redirect(w, r, Prefix+"/signin", http.StatusSeeOther)
}
