package auth

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

// Internal causes the OIDC verifier maps to public reasons.
var (
	errUnknownKey      = errors.New("no key in the issuer's JWKS matches the token")
	errBadSignature    = errors.New("signature does not verify with the matching key")
	errJWKSUnavailable = errors.New("JWKS unavailable")
)

// remoteKeys is an oidc.KeySet over the issuer's JWKS document.
//
// go-oidc's RemoteKeySet refetches the JWKS every time a token names a key id it
// has not cached. That is right for key rotation and wrong for an attacker: a
// stream of tokens with made-up kids turns modgate into a JWKS fetch amplifier
// against the company IdP. remoteKeys refetches for an unknown kid at most once
// per cooldown; in between, unknown kids are refused from the cache. It also
// refetches when the cached set is older than maxAge, so keys the IdP withdrew
// stop being trusted.
type remoteKeys struct {
	url      string
	client   *http.Client
	algs     []jose.SignatureAlgorithm
	cooldown time.Duration
	maxAge   time.Duration
	logger   *slog.Logger
	now      func() time.Time

	keys atomic.Pointer[keyCache]

	fetchMu      sync.Mutex // serialises fetches; holders re-check the generation
	nextFetchMin time.Time  // guarded by fetchMu: no refetch-for-unknown-kid before this
	fetches      atomic.Int64
}

type keyCache struct {
	keys    []jose.JSONWebKey
	fetched time.Time
	gen     uint64
}

// VerifySignature implements oidc.KeySet.
func (k *remoteKeys) VerifySignature(ctx context.Context, raw string) ([]byte, error) {
	jws, err := jose.ParseSigned(raw, k.algs)
	if err != nil {
		return nil, fmt.Errorf("oidc: malformed jwt: %w", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, fmt.Errorf("oidc: malformed jwt: %d signatures", len(jws.Signatures))
	}
	kid := jws.Signatures[0].Header.KeyID

	cache := k.keys.Load()
	if cache != nil && k.now().Sub(cache.fetched) < k.maxAge {
		payload, err := verifyWith(jws, kid, cache.keys)
		if !errors.Is(err, errUnknownKey) {
			return payload, err
		}
	}
	var gen uint64
	if cache != nil {
		gen = cache.gen
	}
	cache, err = k.refresh(ctx, gen, kid)
	if err != nil {
		return nil, err
	}
	return verifyWith(jws, kid, cache.keys)
}

// verifyWith verifies jws with the key named kid, or with every key when the
// token names none (some IdPs publish a single unnamed key).
func verifyWith(jws *jose.JSONWebSignature, kid string, keys []jose.JSONWebKey) ([]byte, error) {
	found := false
	for _, key := range keys {
		if kid != "" && key.KeyID != kid {
			continue
		}
		if key.Use != "" && key.Use != "sig" {
			continue
		}
		found = true
		if payload, err := jws.Verify(key); err == nil {
			return payload, nil
		}
	}
	if found && kid != "" {
		return nil, errBadSignature
	}
	return nil, errUnknownKey
}

// refresh fetches the JWKS unless another caller already did after generation
// seen, or a fetch left a key id unresolved less than cooldown ago. It returns
// the newest cache. A fetch that finds kid (a rotation at the IdP) starts no
// cooldown; one that does not, or that fails, does.
func (k *remoteKeys) refresh(ctx context.Context, seen uint64, kid string) (*keyCache, error) {
	k.fetchMu.Lock()
	defer k.fetchMu.Unlock()

	cur := k.keys.Load()
	if cur != nil && cur.gen != seen {
		return cur, nil // someone refreshed while we waited
	}
	now := k.now()
	if now.Before(k.nextFetchMin) {
		if cur == nil {
			return nil, errJWKSUnavailable
		}
		// Cooldown: answer from the cache (which lacks the kid, or is past
		// maxAge while the IdP is unreachable).
		return cur, nil
	}

	keys, err := k.fetch(ctx)
	if err != nil {
		k.nextFetchMin = now.Add(k.cooldown)
		k.logger.Warn("auth: fetching the issuer's JWKS failed", "url", k.url, "err", err)
		if cur != nil {
			return cur, nil // keep verifying with the keys we have
		}
		return nil, fmt.Errorf("%w: %w", errJWKSUnavailable, err)
	}
	if kid == "" || !slices.ContainsFunc(keys, func(key jose.JSONWebKey) bool { return key.KeyID == kid }) {
		k.nextFetchMin = now.Add(k.cooldown)
	}
	var gen uint64 = 1
	if cur != nil {
		gen = cur.gen + 1
	}
	next := &keyCache{keys: keys, fetched: now, gen: gen}
	k.keys.Store(next)
	k.logger.Debug("auth: fetched the issuer's JWKS", "url", k.url, "keys", len(keys))
	return next, nil
}

func (k *remoteKeys) fetch(ctx context.Context) ([]jose.JSONWebKey, error) {
	k.fetches.Add(1)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, k.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := k.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", k.url, resp.Status)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("decoding JWKS from %s: %w", k.url, err)
	}
	return set.Keys, nil
}
