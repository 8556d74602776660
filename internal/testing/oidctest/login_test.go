package oidctest

import (
	"context"
	"errors"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// The authorization-code flow with PKCE, as a browser and a web client run it:
// authorize → login form → callback with a code → token exchange → ID token.
func TestAuthorizationCodeFlow(t *testing.T) {
	t.Parallel()
	p := Start(t)
	const redirect = "https://127.0.0.1:1/callback"
	p.RegisterWebClient("console", "s3cret", redirect)
	p.AddUser("ann@example.com", []string{"security-audit"})

	ctx := oidc.ClientContext(context.Background(), p.HTTPClient())
	provider, err := oidc.NewProvider(ctx, p.Issuer())
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, secret, verifierSent, wantErr string
	}{
		{name: "ok/confidential"},
		{name: "fail/wrong-verifier", verifierSent: "wrong-verifier-wrong-verifier-wrong-verifier-0123", wantErr: "invalid_grant"},
		{name: "fail/wrong-secret", secret: "nope", wantErr: "invalid_client"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			secret := "s3cret"
			if tt.secret != "" {
				secret = tt.secret
			}
			conf := oauth2.Config{ClientID: "console", ClientSecret: secret, Endpoint: provider.Endpoint(), RedirectURL: redirect, Scopes: []string{oidc.ScopeOpenID, "groups"}}
			verifier := oauth2.GenerateVerifier()
			authURL := conf.AuthCodeURL("st4te", oauth2.S256ChallengeOption(verifier), oidc.Nonce("n0nce"))
			code := browse(t, p, authURL, redirect, "ann@example.com")
			sent := verifier
			if tt.verifierSent != "" {
				sent = tt.verifierSent
			}
			tok, err := conf.Exchange(ctx, code, oauth2.VerifierOption(sent))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("exchange: %v, want %s", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			raw, _ := tok.Extra("id_token").(string)
			idt, err := provider.Verifier(&oidc.Config{ClientID: "console"}).Verify(ctx, raw)
			if err != nil {
				t.Fatal(err)
			}
			var claims struct {
				Groups []string `json:"groups"`
			}
			idt.Claims(&claims)
			if idt.Subject != "ann@example.com" || idt.Nonce != "n0nce" || len(claims.Groups) != 1 || claims.Groups[0] != "security-audit" {
				t.Errorf("ID token: sub %q nonce %q groups %v", idt.Subject, idt.Nonce, claims.Groups)
			}
			// The code is single-use.
			if _, err := conf.Exchange(ctx, code, oauth2.VerifierOption(verifier)); err == nil {
				t.Error("a redeemed code was accepted again")
			}
		})
	}
}

// browse follows the authorization request to the login form, submits it as
// user and returns the code the provider sends to redirect.
func browse(t *testing.T, p *Provider, authURL, redirect, user string) string {
	t.Helper()
	var final *url.URL
	hc := *p.HTTPClient()
	hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if strings.HasPrefix(req.URL.String(), redirect) {
			final = req.URL
			return http.ErrUseLastResponse
		}
		return nil
	}
	resp, err := hc.Get(authURL)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.Request.URL.Path != loginPath {
		t.Fatalf("authorize led to %s, want the login form", resp.Request.URL)
	}
	id := resp.Request.URL.Query().Get("id")
	resp, err = hc.PostForm(p.Issuer()+loginPath, url.Values{"id": {id}, "username": {user}})
	if err != nil && !errors.Is(err, http.ErrUseLastResponse) {
		t.Fatal(err)
	}
	resp.Body.Close()
	if final == nil {
		t.Fatalf("login did not redirect to the client (status %s)", resp.Status)
	}
	if final.Query().Get("state") != "st4te" {
		t.Fatalf("callback state %q", final.Query().Get("state"))
	}
	return final.Query().Get("code")
}
