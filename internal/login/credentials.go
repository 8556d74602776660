package login

import (
	"context"
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
	if !force && now.Add(RefreshMargin).Before(c.Expiry) {
		return c, nil
	}
	if c.RefreshToken == "" {
		return c, fmt.Errorf("login: the token for %s expired and there is no refresh token: %w", c.Proxy, ErrLoginRequired)
	}
	if client == nil {
		client = http.DefaultClient
	}
	fresh, err := refresh(ctx, c, client)
	if err != nil {
		if creds, lerr := LoadCredentials(path); lerr == nil {
			for _, o := range creds {
				if o.Proxy == c.Proxy && o.IDToken != c.IDToken && now.Add(RefreshMargin).Before(o.Expiry) {
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
