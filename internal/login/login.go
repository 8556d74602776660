// Package login signs a developer in to modgate with the OIDC device
// authorization grant (RFC 8628) and stores the result where the go command
// finds it: ~/.netrc for plain GOPROXY use, and a credentials file in the user's
// config directory from which the GOAUTH helper (`modgate auth`) serves, and
// refreshes, the token.
//
// The token stored is the OIDC ID token. It is what modgate verifies: its
// audience is the login client id, which the server accepts, and it carries the
// groups claim modgate maps to teams. An access token's audience and format are
// IdP-specific (often opaque), so it does not identify the caller; it travels
// beside the ID token as the Basic login, for the IdP's userinfo endpoint when
// the ID token carries no groups.
//
// ID tokens expire (typically after an hour). The go command asks the GOAUTH
// entries in turn and, when several supply credentials for a URL, the leftmost
// wins (cmd/go/internal/auth runs them right to left, each overwriting), so
// the helper goes first: GOAUTH='modgate auth;netrc' (Go 1.24+). The helper
// refreshes the token with the stored refresh token; .netrc keeps the token of
// the last `modgate login`, for tools without GOAUTH and as a fallback when the
// helper cannot run.
package login

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/modgate/modgate/internal/netrc"
)

// NetrcLogin is the login written to .netrc when there is no access token to
// write there. modgate authenticates the password (the ID token); a login
// other than this one is taken as the access token issued with it.
const NetrcLogin = "modgate"

// GOAUTH is the documented GOAUTH setting: the helper first, so its refreshed
// token wins over the one `modgate login` wrote to .netrc.
const GOAUTH = "modgate auth;netrc"

// DefaultScopes are requested when Config.Scopes is empty: openid for the ID
// token, email and profile for a readable subject, groups for teams (IdPs that
// do not know the scope ignore it), offline_access for a refresh token.
var DefaultScopes = []string{oidc.ScopeOpenID, "profile", "email", "groups", oidc.ScopeOfflineAccess}

// DiscoveryPath is where a modgate server may publish its ServerInfo, so that
// `modgate login https://proxy` needs no other flags.
const DiscoveryPath = "/.well-known/modgate-login"

// ServerInfo is what a modgate server publishes at DiscoveryPath.
type ServerInfo struct {
	Issuer   string   `json:"issuer"`
	ClientID string   `json:"client_id"`
	Scopes   []string `json:"scopes,omitempty"`
}

// Config configures Login.
type Config struct {
	// ProxyURL is modgate's URL exactly as it goes into GOPROXY, e.g.
	// https://modgate.corp.example:8443.
	ProxyURL string
	// Issuer and ClientID name the IdP and the public client registered for
	// modgate login. When Issuer is empty they are fetched from the proxy's
	// DiscoveryPath.
	Issuer   string
	ClientID string
	// Scopes requested; empty means the scopes the proxy publishes at
	// DiscoveryPath (when Issuer is empty), else DefaultScopes.
	Scopes []string
	// CAPEM is the extra CA certificates HTTPClient trusts, stored with the
	// credential so that `modgate auth` refreshes with the same trust.
	CAPEM []byte
	// NetrcPath is the .netrc to update; empty means netrc.DefaultPath().
	NetrcPath string
	// CredentialsPath is the GOAUTH helper's credentials file; empty means
	// DefaultCredentialsPath().
	CredentialsPath string
	// PrivatePatterns is the GOPRIVATE-style list of private module paths,
	// printed in the GONOSUMDB advice; empty leaves a placeholder.
	PrivatePatterns string
	// HTTPClient talks to the IdP and the proxy; nil means http.DefaultClient.
	HTTPClient *http.Client
	// Prompt tells the user where to approve the sign-in. Nil prints to Out.
	Prompt func(ctx context.Context, p Prompt) error
	// Out receives the prompt and the advice; nil discards.
	Out io.Writer
}

// Prompt is what the user needs to approve the device in a browser.
type Prompt struct {
	VerificationURI         string
	VerificationURIComplete string // includes the code; may be empty
	UserCode                string
	Expiry                  time.Time
}

// Validate reports the first problem with c.
func (c *Config) Validate() error {
	u, err := url.Parse(c.ProxyURL)
	if err != nil || u.Scheme != "https" || u.Host == "" {
		return fmt.Errorf("login: proxy URL %q: want https://host[:port][/path]", c.ProxyURL)
	}
	if u.User != nil || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("login: proxy URL %q: no user info, query or fragment", c.ProxyURL)
	}
	if c.Issuer != "" && c.ClientID == "" {
		return errors.New("login: client id is required with an issuer")
	}
	return nil
}

// Result describes a completed login.
type Result struct {
	Subject   string    // the ID token's sub
	Expiry    time.Time // the ID token's expiry
	Machine   string    // the .netrc machine written
	NetrcPath string
	// CredentialsPath is where the GOAUTH helper finds the token.
	CredentialsPath string
	HasRefreshToken bool
	Scopes          []string // requested
}

// Login runs the device flow and stores the ID token in .netrc and in the
// credentials file.
func Login(ctx context.Context, cfg Config) (*Result, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	client := cfg.HTTPClient
	if client == nil {
		client = http.DefaultClient
	}
	out := cfg.Out
	if out == nil {
		out = io.Discard
	}
	proxy := strings.TrimSuffix(cfg.ProxyURL, "/")
	if cfg.Issuer == "" {
		info, err := fetchServerInfo(ctx, client, proxy)
		if err != nil {
			return nil, err
		}
		cfg.Issuer, cfg.ClientID = info.Issuer, info.ClientID
		// The scopes this deployment's IdP knows: an IdP that refuses unknown
		// scopes (Keycloak without a groups scope) refuses DefaultScopes.
		if len(cfg.Scopes) == 0 {
			cfg.Scopes = info.Scopes
		}
	}
	if len(cfg.Scopes) == 0 {
		cfg.Scopes = DefaultScopes
	}

	octx := oidc.ClientContext(ctx, client)
	provider, err := oidc.NewProvider(octx, cfg.Issuer)
	if err != nil {
		return nil, fmt.Errorf("login: discovering %s: %w", cfg.Issuer, err)
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInParams // a public client: client_id in the form, no secret
	if endpoint.DeviceAuthURL == "" {
		return nil, fmt.Errorf("login: %s does not offer the device authorization grant", cfg.Issuer)
	}
	oc := &oauth2.Config{ClientID: cfg.ClientID, Endpoint: endpoint, Scopes: cfg.Scopes}
	da, err := oc.DeviceAuth(octx)
	if err != nil {
		return nil, fmt.Errorf("login: starting device authorization: %w", err)
	}
	p := Prompt{
		VerificationURI:         da.VerificationURI,
		VerificationURIComplete: da.VerificationURIComplete,
		UserCode:                da.UserCode,
		Expiry:                  da.Expiry,
	}
	prompt := cfg.Prompt
	if prompt == nil {
		prompt = func(_ context.Context, p Prompt) error { return PrintPrompt(out, p) }
	}
	if err := prompt(ctx, p); err != nil {
		return nil, err
	}
	tok, err := oc.DeviceAccessToken(octx, da)
	if err != nil {
		return nil, fmt.Errorf("login: waiting for approval: %w", err)
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return nil, fmt.Errorf("login: %s returned no ID token (is the openid scope allowed?)", cfg.Issuer)
	}
	idTok, err := provider.VerifierContext(octx, &oidc.Config{ClientID: cfg.ClientID}).Verify(octx, rawID)
	if err != nil {
		return nil, fmt.Errorf("login: the ID token from %s does not verify: %w", cfg.Issuer, err)
	}

	res := &Result{Subject: idTok.Subject, Expiry: idTok.Expiry, HasRefreshToken: tok.RefreshToken != "", Scopes: cfg.Scopes}
	cred := Credential{
		Proxy:        proxy,
		Issuer:       cfg.Issuer,
		ClientID:     cfg.ClientID,
		Scopes:       cfg.Scopes,
		IDToken:      rawID,
		RefreshToken: tok.RefreshToken,
		Expiry:       idTok.Expiry,
		AccessToken:  tok.AccessToken,
		AccessExpiry: tok.Expiry,
		CAPEM:        string(cfg.CAPEM),
	}
	if res.Machine, err = Machine(proxy); err != nil {
		return nil, err
	}
	if res.NetrcPath = cfg.NetrcPath; res.NetrcPath == "" {
		if res.NetrcPath, err = netrc.DefaultPath(); err != nil {
			return nil, err
		}
	}
	if err := WriteNetrc(res.NetrcPath, res.Machine, cred.BasicLogin(), rawID); err != nil {
		return nil, err
	}
	if res.CredentialsPath = cfg.CredentialsPath; res.CredentialsPath == "" {
		if res.CredentialsPath, err = DefaultCredentialsPath(); err != nil {
			return nil, err
		}
	}
	if err := SaveCredential(res.CredentialsPath, cred); err != nil {
		return nil, err
	}
	return res, nil
}

// PrintPrompt writes the sign-in instructions. The "code:" line is stable for
// scripts and tests that drive the flow.
func PrintPrompt(w io.Writer, p Prompt) error {
	uri := p.VerificationURI
	if p.VerificationURIComplete != "" {
		uri = p.VerificationURIComplete // the code pre-filled: one click less
	}
	_, err := fmt.Fprintf(w, "To sign in to modgate, open this URL in a browser:\n\n    %s\n\nand confirm the code: %s\n\nWaiting for approval (until %s)...\n",
		uri, p.UserCode, p.Expiry.Local().Format(time.Kitchen))
	return err
}

// Machine returns the .netrc machine name the go command looks up for a proxy
// URL: the URL's host exactly as written, with its port if it has one. The go
// command strips "https://" from the request URL and matches the rest by path
// prefixes (cmd/go/internal/auth), so https://h:8443/x needs "h:8443" and
// https://h needs "h".
func Machine(proxyURL string) (string, error) {
	u, err := url.Parse(proxyURL)
	if err != nil || u.Host == "" {
		return "", fmt.Errorf("login: proxy URL %q has no host", proxyURL)
	}
	return u.Host, nil
}

// WriteNetrc sets the machine's entry in the .netrc at path to login and the
// token, keeping everything else, and leaves the file with mode 0600.
func WriteNetrc(path, machine, login, token string) error {
	f, err := netrc.ReadFile(path)
	if err != nil {
		return err
	}
	if err := f.Set(machine, login, token); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return f.WriteFile(path)
}

// Advice returns the `go env -w` line that points the go command at the proxy.
// GOSUMDB stays sum.golang.org: the go command reaches it through the proxy's
// /sumdb/ endpoint, so public modules are verified where the checksum database
// is unreachable. Private modules are excluded from checksum lookups with
// GONOSUMDB; GOPRIVATE is not used, since it would also route them around the
// proxy.
func Advice(proxyURL, privatePatterns string) string {
	if privatePatterns == "" {
		privatePatterns = "<your private module patterns, e.g. corp.example.com/*>"
	}
	return fmt.Sprintf("go env -w GOPROXY=%s GONOSUMDB=%s GOSUMDB=sum.golang.org", strings.TrimSuffix(proxyURL, "/"), privatePatterns)
}

func fetchServerInfo(ctx context.Context, client *http.Client, proxy string) (*ServerInfo, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, proxy+DiscoveryPath, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("login: asking %s for its identity provider: %w", proxy, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("login: %s%s: %s (pass --issuer and --client-id)", proxy, DiscoveryPath, resp.Status)
	}
	var info ServerInfo
	if err := json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&info); err != nil {
		return nil, fmt.Errorf("login: decoding %s%s: %w", proxy, DiscoveryPath, err)
	}
	if info.Issuer == "" || info.ClientID == "" {
		return nil, fmt.Errorf("login: %s%s names no issuer or client id", proxy, DiscoveryPath)
	}
	return &info, nil
}
