package oidctest

import (
	"encoding/json"
	"net/http"
	"slices"
	"testing"
)

func getJSON(t *testing.T, p *Provider, url string, v any) {
	t.Helper()
	resp, err := p.HTTPClient().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func TestProvider(t *testing.T) {
	t.Parallel()
	p := Start(t)
	var doc struct {
		Issuer     string   `json:"issuer"`
		JWKSURI    string   `json:"jwks_uri"`
		DeviceAuth string   `json:"device_authorization_endpoint"`
		Grants     []string `json:"grant_types_supported"`
	}
	getJSON(t, p, p.Issuer()+"/.well-known/openid-configuration", &doc)
	if doc.Issuer != p.Issuer() || doc.DeviceAuth == "" || !slices.Contains(doc.Grants, "urn:ietf:params:oauth:grant-type:device_code") {
		t.Fatalf("discovery document: %+v", doc)
	}
	kids := func() []string {
		var set struct {
			Keys []struct {
				Kid string `json:"kid"`
			} `json:"keys"`
		}
		getJSON(t, p, doc.JWKSURI, &set)
		var ids []string
		for _, k := range set.Keys {
			ids = append(ids, k.Kid)
		}
		return ids
	}
	first := p.SigningKeyID()
	p.RotateKeys()
	second := p.SigningKeyID()
	if got := kids(); first == second || !slices.Contains(got, first) || !slices.Contains(got, second) {
		t.Errorf("after rotation JWKS has %v, want %s and %s", got, first, second)
	}
	p.RetireOldKeys()
	if got := kids(); !slices.Equal(got, []string{second}) {
		t.Errorf("after retirement JWKS has %v, want [%s]", got, second)
	}
	if p.JWKSRequests() != 2 {
		t.Errorf("JWKSRequests = %d, want 2", p.JWKSRequests())
	}
	p.SetDown(true)
	resp, err := p.HTTPClient().Get(doc.JWKSURI)
	if err != nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("while down: %v %v", resp, err)
	}
}
