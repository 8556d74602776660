package auth

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/sync/singleflight"

	"github.com/modgate/modgate/internal/derrors"
)

// Reasons for refusals that come from the userinfo endpoint.
const (
	ReasonUserinfoNoAccessToken = "no access token for the identity provider's userinfo endpoint"
	ReasonUserinfoRefused       = "access token refused by the identity provider"
	ReasonUserinfoSubject       = "access token belongs to another subject"
)

// groups returns the raw groups claim for a verified ID token, from the
// source the configuration names (OIDCConfig.GroupsSource).
func (v *OIDCVerifier) groups(ctx context.Context, s *oidcState, tok *oidc.IDToken, claims map[string]any) (any, error) {
	claim, inToken := claims[v.cfg.GroupsClaim]
	switch v.cfg.GroupsSource {
	case GroupsIDToken:
		v.noteOverage(ctx, tok.Subject, claims)
		return claim, nil
	case GroupsAuto:
		if inToken {
			return claim, nil
		}
		v.noteOverage(ctx, tok.Subject, claims)
	}
	accessToken := accessTokenFrom(ctx)
	if accessToken == "" {
		if v.cfg.GroupsSource == GroupsUserinfo {
			return nil, derrors.New(derrors.Unauthenticated, ReasonUserinfoNoAccessToken)
		}
		return nil, nil // auto: an ID token without groups, and nothing to ask userinfo with
	}
	if s.userinfoURL == "" {
		v.logger.LogAttrs(ctx, slog.LevelWarn, "auth: the IdP publishes no userinfo_endpoint; no groups", slog.String("issuer", v.cfg.Issuer))
		return nil, nil
	}
	return v.userinfo.get(ctx, v, s.userinfoURL, accessToken, tok.Subject, tok.Expiry)
}

// noteOverage logs Microsoft Entra ID's group overage: a user in more groups
// than fit in a token gets "_claim_names": {"groups": ...} (or "hasgroups":
// true) instead of the list, which only Microsoft Graph resolves. modgate does
// not call Graph (it would need Graph permissions and an application secret);
// docs/authentication.md says how to keep the groups in the token.
func (v *OIDCVerifier) noteOverage(ctx context.Context, subject string, claims map[string]any) {
	names, _ := claims["_claim_names"].(map[string]any)
	_, overage := names[v.cfg.GroupsClaim]
	if has, _ := claims["hasgroups"].(bool); overage || has {
		v.logger.LogAttrs(ctx, slog.LevelWarn, "auth: the ID token signals group overage (Microsoft Entra ID); groups are not in the token and modgate does not query Microsoft Graph",
			slog.String("subject", subject))
	}
}

// userinfoCache keeps the groups claim from userinfo per access token, until
// the ID token presented with it expires, for at most max tokens. Concurrent
// requests with the same token (the go command fetches in parallel) make one
// call to the IdP.
type userinfoCache struct {
	max    int
	flight singleflight.Group

	mu      sync.Mutex
	entries map[string]userinfoEntry
}

type userinfoEntry struct {
	groups  any
	expires time.Time
}

func newUserinfoCache(max int) *userinfoCache {
	return &userinfoCache{max: max, entries: map[string]userinfoEntry{}}
}

// Len reports the number of cached answers (for tests).
func (c *userinfoCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.entries)
}

func (c *userinfoCache) get(ctx context.Context, v *OIDCVerifier, endpoint, accessToken, subject string, expires time.Time) (any, error) {
	sum := sha256.Sum256([]byte(accessToken))
	key := hex.EncodeToString(sum[:]) + " " + subject // never the token itself
	now := v.now()
	c.mu.Lock()
	e, ok := c.entries[key]
	c.mu.Unlock()
	if ok && now.Before(e.expires) {
		return e.groups, nil
	}
	res, err, _ := c.flight.Do(key, func() (any, error) {
		groups, err := v.fetchUserinfo(ctx, endpoint, accessToken, subject)
		if err != nil {
			return nil, err
		}
		c.put(key, userinfoEntry{groups: groups, expires: expires}, now)
		return groups, nil
	})
	return res, err
}

func (c *userinfoCache) put(key string, e userinfoEntry, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.entries) >= c.max {
		for k, o := range c.entries {
			if !now.Before(o.expires) {
				delete(c.entries, k)
			}
		}
	}
	for k := range c.entries { // still full: drop an arbitrary entry
		if len(c.entries) < c.max {
			break
		}
		delete(c.entries, k)
	}
	c.entries[key] = e
}

// fetchUserinfo asks the userinfo endpoint (OIDC Core 5.3) for the claims of
// the access token's user and returns its groups claim. The answer must be
// about the ID token's subject (5.3.2): otherwise a caller could pair their
// own ID token with someone else's access token and take that user's groups.
func (v *OIDCVerifier) fetchUserinfo(ctx context.Context, endpoint, accessToken, subject string) (any, error) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, endpoint, nil)
	if err != nil {
		return nil, derrors.WithCause(derrors.Unavailable, err, ReasonIdPUnavailable)
	}
	req.Header.Set("Authorization", "Bearer "+accessToken)
	req.Header.Set("Accept", "application/json")
	resp, err := v.client.Do(req)
	if err != nil {
		return nil, derrors.WithCause(derrors.Unavailable, fmt.Errorf("userinfo: %w", err), ReasonIdPUnavailable)
	}
	defer resp.Body.Close()
	switch {
	case resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden:
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("userinfo: %s", resp.Status), ReasonUserinfoRefused)
	case resp.StatusCode != http.StatusOK:
		return nil, derrors.WithCause(derrors.Unavailable, fmt.Errorf("userinfo: %s", resp.Status), ReasonIdPUnavailable)
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/json" {
		// A signed (application/jwt) answer is configured at the IdP per client.
		return nil, derrors.WithCause(derrors.Unavailable, fmt.Errorf("userinfo: content type %q, want application/json", mt), ReasonIdPUnavailable)
	}
	var claims map[string]any
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&claims); err != nil {
		return nil, derrors.WithCause(derrors.Unavailable, fmt.Errorf("userinfo: %w", err), ReasonIdPUnavailable)
	}
	if sub, _ := claims["sub"].(string); sub != subject {
		return nil, derrors.WithCause(derrors.Unauthenticated, fmt.Errorf("userinfo sub %q, ID token sub %q", sub, subject), ReasonUserinfoSubject)
	}
	return claims[v.cfg.GroupsClaim], nil
}
