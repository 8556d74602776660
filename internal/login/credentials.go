package login

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Credential is one proxy's stored sign-in.
type Credential struct {
	Proxy        string    `json:"proxy"` // GOPROXY URL, no trailing slash
	Issuer       string    `json:"issuer"`
	ClientID     string    `json:"client_id"`
	Scopes       []string  `json:"scopes,omitempty"`
	IDToken      string    `json:"id_token"`
	RefreshToken string    `json:"refresh_token,omitempty"`
	Expiry       time.Time `json:"expiry"` // of IDToken
	// AccessToken is the OAuth access token issued with IDToken. It is sent
	// beside the ID token (as the Basic login) so that modgate can read groups
	// from the IdP's userinfo endpoint when the ID token has none.
	AccessToken  string    `json:"access_token,omitempty"`
	AccessExpiry time.Time `json:"access_expiry,omitzero"`
	// CAPEM holds the extra CA certificates (--ca-file at login) trusted for
	// the IdP, so that refreshes trust what the login trusted.
	CAPEM string `json:"ca_pem,omitempty"`
}

// expiry is when the first of the credential's tokens expires.
func (c Credential) expiry() time.Time {
	if c.AccessToken != "" && !c.AccessExpiry.IsZero() && c.AccessExpiry.Before(c.Expiry) {
		return c.AccessExpiry
	}
	return c.Expiry
}

// BasicLogin is the login sent with the ID token as Basic password: the access
// token when there is one that fits in a Basic login, else NetrcLogin.
func (c Credential) BasicLogin() string {
	if c.AccessToken == "" || strings.ContainsAny(c.AccessToken, ": \t\r\n#") {
		return NetrcLogin
	}
	return c.AccessToken
}

// Header returns the Authorization header value presenting c to modgate:
// Basic with the access token as login and the ID token as password, as the
// go command builds it from the .netrc entry `modgate login` writes.
func (c Credential) Header() string {
	return "Basic " + base64.StdEncoding.EncodeToString([]byte(c.BasicLogin()+":"+c.IDToken))
}

type credentialsFile struct {
	Credentials []Credential `json:"credentials"`
}

// DefaultCredentialsPath is modgate/credentials.json in the user's config
// directory (~/.config on Linux).
func DefaultCredentialsPath() (string, error) {
	dir, err := os.UserConfigDir()
	if err != nil {
		return "", fmt.Errorf("login: %w", err)
	}
	return filepath.Join(dir, "modgate", "credentials.json"), nil
}

// LoadCredentials reads the credentials file; a missing file holds none.
func LoadCredentials(path string) ([]Credential, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("login: %w", err)
	}
	var f credentialsFile
	if err := json.Unmarshal(data, &f); err != nil {
		return nil, fmt.Errorf("login: %s: %w", path, err)
	}
	return f.Credentials, nil
}

// SaveCredential stores c, replacing any credential for the same proxy. The
// file and its directory are private to the user (0600, 0700) and replaced
// atomically.
func SaveCredential(path string, c Credential) error {
	creds, err := LoadCredentials(path)
	if err != nil {
		return err
	}
	creds = slices.DeleteFunc(creds, func(o Credential) bool { return o.Proxy == c.Proxy })
	creds = append(creds, c)
	data, err := json.MarshalIndent(credentialsFile{Credentials: creds}, "", "  ")
	if err != nil {
		return err
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	tmp, err := os.CreateTemp(dir, ".credentials-*.tmp")
	if err != nil {
		return fmt.Errorf("login: %w", err)
	}
	defer os.Remove(tmp.Name()) // after a successful rename this fails harmlessly
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("login: %w", err)
	}
	if _, err := tmp.Write(append(data, '\n')); err != nil {
		tmp.Close()
		return fmt.Errorf("login: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return fmt.Errorf("login: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	return nil
}

// RefreshMargin is how long before its expiry a token is refreshed, so that
// it does not expire during a long `go mod download`.
const RefreshMargin = 2 * time.Minute

// ErrLoginRequired says the stored credential cannot be used or refreshed.
var ErrLoginRequired = errors.New("run `modgate login` again")

// FreshToken returns c's ID token, refreshing it first through the refresh
// token if it expires within RefreshMargin or force is set (the proxy refused
// it), and saving the refreshed credential to path.
//
// Two go commands may refresh at once; with refresh-token rotation the second
// refresh fails. Before giving up, FreshToken rereads the file and uses a
// token another process saved in the meantime.
func FreshToken(ctx context.Context, path string, c Credential, client *http.Client, force bool, now time.Time) (Credential, error) {
	if !force && now.Add(RefreshMargin).Before(c.expiry()) {
		return c, nil
	}
	if c.RefreshToken == "" {
		return c, fmt.Errorf("login: the token for %s expired and there is no refresh token: %w", c.Proxy, ErrLoginRequired)
	}
	if client == nil {
		var err error
		if client, err = NewHTTPClient([]byte(c.CAPEM)); err != nil {
			return c, err
		}
	}
	fresh, err := refresh(ctx, c, client)
	if err != nil {
		if creds, lerr := LoadCredentials(path); lerr == nil {
			for _, o := range creds {
				if o.Proxy == c.Proxy && o.IDToken != c.IDToken && now.Add(RefreshMargin).Before(o.expiry()) {
					return o, nil
				}
			}
		}
		return c, fmt.Errorf("login: refreshing the token for %s: %w (%w)", c.Proxy, err, ErrLoginRequired)
	}
	if err := SaveCredential(path, fresh); err != nil {
		return fresh, err
	}
	return fresh, nil
}

func refresh(ctx context.Context, c Credential, client *http.Client) (Credential, error) {
	octx := oidc.ClientContext(ctx, client)
	provider, err := oidc.NewProvider(octx, c.Issuer)
	if err != nil {
		return c, err
	}
	endpoint := provider.Endpoint()
	endpoint.AuthStyle = oauth2.AuthStyleInParams // a public client: client_id in the form, no secret
	oc := &oauth2.Config{ClientID: c.ClientID, Endpoint: endpoint, Scopes: c.Scopes}
	tok, err := oc.TokenSource(octx, &oauth2.Token{RefreshToken: c.RefreshToken}).Token()
	if err != nil {
		return c, err
	}
	rawID, _ := tok.Extra("id_token").(string)
	if rawID == "" {
		return c, errors.New("the refresh response carries no ID token")
	}
	idTok, err := provider.VerifierContext(octx, &oidc.Config{ClientID: c.ClientID}).Verify(octx, rawID)
	if err != nil {
		return c, fmt.Errorf("the refreshed ID token does not verify: %w", err)
	}
	fresh := c
	fresh.IDToken = rawID
	fresh.Expiry = idTok.Expiry
	fresh.AccessToken, fresh.AccessExpiry = tok.AccessToken, tok.Expiry
	if tok.RefreshToken != "" {
		fresh.RefreshToken = tok.RefreshToken
	}
	return fresh, nil
}

// ForURL returns the credential whose proxy URL is a prefix of u (at a path
// boundary), the longest if several match.
func ForURL(creds []Credential, u string) (Credential, bool) {
	var best Credential
	found := false
	for _, c := range creds {
		p := strings.TrimSuffix(c.Proxy, "/")
		if (u == p || strings.HasPrefix(u, p+"/")) && len(p) > len(best.Proxy) {
			best, found = c, true
		}
	}
	return best, found
}

// NewHTTPClient returns a client with a 30s timeout trusting the system roots
// plus the PEM certificates given (none: the system roots only).
func NewHTTPClient(pems ...[]byte) (*http.Client, error) {
	client := &http.Client{Timeout: 30 * time.Second}
	var pool *x509.CertPool
	for _, p := range pems {
		if len(p) == 0 {
			continue
		}
		if pool == nil {
			var err error
			if pool, err = x509.SystemCertPool(); err != nil {
				pool = x509.NewCertPool()
			}
		}
		if !pool.AppendCertsFromPEM(p) {
			return nil, errors.New("login: no PEM certificates in the CA file")
		}
	}
	if pool != nil {
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
		client.Transport = tr
	}
	return client, nil
}
