package oidctest

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	jose "github.com/go-jose/go-jose/v4"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
)

// storage is a minimal in-memory op.Storage: one public native client allowed
// the device and refresh-token grants, web clients registered for the
// authorization-code flow with PKCE (the console), users known by subject, RSA
// signing keys with rotation.
type storage struct {
	mu sync.Mutex

	client        *client
	users         map[string]*user   // by subject
	devices       map[string]*device // by device code
	userCodes     map[string]string  // user code → device code
	accessTokens  map[string]*accessToken
	refreshTokens map[string]*refreshToken
	keys          []*signingKey // last is current
	autoApprove   *user
	webClients    map[string]*client      // authorization-code clients by id
	authRequests  map[string]*authRequest // by id
	codes         map[string]string       // authorization code → auth request id

	groupsOnlyAtUserinfo bool   // ID tokens carry no groups claim
	deviceScopes         string // scopes of the last device authorization request
}

type user struct {
	subject string
	email   string
	groups  []string
}

type device struct {
	state    op.DeviceAuthorizationState
	userCode string
}

type accessToken struct {
	id       string
	subject  string
	audience []string
	scopes   []string
	expires  time.Time
}

type refreshToken struct {
	token    string
	subject  string
	clientID string
	audience []string
	scopes   []string
	authTime time.Time
	amr      []string
}

func newStorage(clientID string) (*storage, error) {
	s := &storage{
		client:        &client{id: clientID},
		users:         map[string]*user{},
		devices:       map[string]*device{},
		userCodes:     map[string]string{},
		accessTokens:  map[string]*accessToken{},
		refreshTokens: map[string]*refreshToken{},
		webClients:    map[string]*client{},
		authRequests:  map[string]*authRequest{},
		codes:         map[string]string{},
	}
	s.client.lifetime.Store(int64(5 * time.Minute))
	k, err := newSigningKey()
	if err != nil {
		return nil, err
	}
	s.keys = []*signingKey{k}
	return s, nil
}

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// signingKey implements op.SigningKey and op.Key.
type signingKey struct {
	id  string
	key *rsa.PrivateKey
}

func newSigningKey() (*signingKey, error) {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	return &signingKey{id: randomID()[:16], key: k}, nil
}

func (k *signingKey) SignatureAlgorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k *signingKey) Key() any                                    { return k.key }
func (k *signingKey) ID() string                                  { return k.id }

type publicKey struct{ *signingKey }

func (k publicKey) Algorithm() jose.SignatureAlgorithm { return jose.RS256 }
func (k publicKey) Use() string                        { return "sig" }
func (k publicKey) Key() any                           { return &k.key.PublicKey }

func (s *storage) user(subject string) *user {
	if u, ok := s.users[subject]; ok {
		return u
	}
	return &user{subject: subject}
}

var errUnsupported = errors.New("oidctest: not supported")

// AuthStorage: the authorization-code flow (with PKCE) for web clients such as
// the console. Requests wait for the login form (login.go) to name a user.

func (s *storage) CreateAuthRequest(ctx context.Context, req *oidc.AuthRequest, userID string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a := &authRequest{id: randomID(), req: *req, created: time.Now()}
	if req.CodeChallenge != "" {
		a.challenge = &oidc.CodeChallenge{Challenge: req.CodeChallenge, Method: req.CodeChallengeMethod}
	}
	s.authRequests[a.id] = a
	return a, nil
}

func (s *storage) AuthRequestByID(ctx context.Context, id string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok {
		return nil, errors.New("oidctest: unknown auth request")
	}
	cp := *a
	return &cp, nil
}

func (s *storage) AuthRequestByCode(ctx context.Context, code string) (op.AuthRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.codes[code]
	if !ok {
		return nil, errors.New("oidctest: unknown authorization code")
	}
	a, ok := s.authRequests[id]
	if !ok {
		return nil, errors.New("oidctest: authorization code already used")
	}
	cp := *a
	return &cp, nil
}

func (s *storage) SaveAuthCode(ctx context.Context, id, code string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.authRequests[id]; !ok {
		return errors.New("oidctest: unknown auth request")
	}
	s.codes[code] = id
	return nil
}

// DeleteAuthRequest runs when a code is redeemed: the code is single-use.
func (s *storage) DeleteAuthRequest(ctx context.Context, id string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.authRequests, id)
	return nil
}

// completeLogin marks an auth request as authenticated by u.
func (s *storage) completeLogin(id string, u *user) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	a, ok := s.authRequests[id]
	if !ok {
		return errors.New("oidctest: unknown auth request")
	}
	if known, ok := s.users[u.subject]; ok && len(u.groups) == 0 {
		u = known
	}
	s.users[u.subject] = u
	a.subject, a.authTime, a.done = u.subject, time.Now(), true
	return nil
}

func (s *storage) CreateAccessToken(ctx context.Context, req op.TokenRequest) (string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccessToken(req)
	return t.id, t.expires, nil
}

func (s *storage) newAccessToken(req op.TokenRequest) *accessToken {
	t := &accessToken{
		id:       randomID(),
		subject:  req.GetSubject(),
		audience: req.GetAudience(),
		scopes:   req.GetScopes(),
		expires:  time.Now().Add(s.client.IDTokenLifetime()),
	}
	s.accessTokens[t.id] = t
	return t
}

func (s *storage) CreateAccessAndRefreshTokens(ctx context.Context, req op.TokenRequest, current string) (string, string, time.Time, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	t := s.newAccessToken(req)
	rt := &refreshToken{token: randomID(), subject: req.GetSubject(), audience: req.GetAudience(), scopes: req.GetScopes(), clientID: s.client.id, authTime: time.Now()}
	if r, ok := req.(op.IDTokenRequest); ok {
		rt.clientID = r.GetClientID()
		rt.authTime = r.GetAuthTime()
		rt.amr = r.GetAMR()
	}
	if current != "" {
		// Rotate: the used refresh token is spent.
		old, ok := s.refreshTokens[current]
		if !ok {
			return "", "", time.Time{}, op.ErrInvalidRefreshToken
		}
		rt.authTime, rt.amr = old.authTime, old.amr
		delete(s.refreshTokens, current)
	}
	s.refreshTokens[rt.token] = rt
	return t.id, rt.token, t.expires, nil
}

func (s *storage) TokenRequestByRefreshToken(ctx context.Context, token string) (op.RefreshTokenRequest, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok {
		return nil, op.ErrInvalidRefreshToken
	}
	return &refreshRequest{rt: *rt}, nil
}

func (s *storage) TerminateSession(ctx context.Context, userID, clientID string) error { return nil }

func (s *storage) RevokeToken(ctx context.Context, token, userID, clientID string) *oidc.Error {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.refreshTokens, token)
	delete(s.accessTokens, token)
	return nil
}

func (s *storage) GetRefreshTokenInfo(ctx context.Context, clientID, token string) (string, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	rt, ok := s.refreshTokens[token]
	if !ok {
		return "", "", op.ErrInvalidRefreshToken
	}
	return rt.subject, rt.token, nil
}

func (s *storage) SigningKey(context.Context) (op.SigningKey, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.keys[len(s.keys)-1], nil
}

func (s *storage) SignatureAlgorithms(context.Context) ([]jose.SignatureAlgorithm, error) {
	return []jose.SignatureAlgorithm{jose.RS256}, nil
}

func (s *storage) KeySet(context.Context) ([]op.Key, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	keys := make([]op.Key, len(s.keys))
	for i, k := range s.keys {
		keys[i] = publicKey{k}
	}
	return keys, nil
}

// OPStorage.

func (s *storage) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	if id == s.client.id {
		return s.client, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if c, ok := s.webClients[id]; ok {
		return c, nil
	}
	return nil, fmt.Errorf("oidctest: unknown client %q", id)
}

func (s *storage) AuthorizeClientIDSecret(ctx context.Context, id, secret string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	c, ok := s.webClients[id]
	if !ok || c.secret == "" {
		return errors.New("oidctest: public client has no secret")
	}
	if subtle.ConstantTimeCompare([]byte(c.secret), []byte(secret)) != 1 {
		return errors.New("oidctest: wrong client secret")
	}
	return nil
}

func (s *storage) setUserinfo(info *oidc.UserInfo, subject string, groups bool) {
	s.mu.Lock()
	u := s.user(subject)
	s.mu.Unlock()
	info.Subject = u.subject
	if u.email != "" {
		info.Email = u.email
		info.EmailVerified = true
	}
	if groups {
		info.AppendClaims("groups", slices.Clone(u.groups))
	}
}

// SetUserinfoFromScopes fills the ID token's user claims.
func (s *storage) SetUserinfoFromScopes(ctx context.Context, info *oidc.UserInfo, userID, clientID string, scopes []string) error {
	s.mu.Lock()
	groups := !s.groupsOnlyAtUserinfo
	s.mu.Unlock()
	s.setUserinfo(info, userID, groups)
	return nil
}

// SetUserinfoFromToken answers the userinfo endpoint.
func (s *storage) SetUserinfoFromToken(ctx context.Context, info *oidc.UserInfo, tokenID, subject, origin string) error {
	s.setUserinfo(info, subject, true)
	return nil
}

func (s *storage) SetIntrospectionFromToken(ctx context.Context, resp *oidc.IntrospectionResponse, tokenID, subject, clientID string) error {
	info := new(oidc.UserInfo)
	s.setUserinfo(info, subject, true)
	resp.SetUserInfo(info)
	resp.Active = true
	resp.ClientID = clientID
	return nil
}

func (s *storage) GetPrivateClaimsFromScopes(ctx context.Context, userID, clientID string, scopes []string) (map[string]any, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.groupsOnlyAtUserinfo {
		return nil, nil
	}
	return map[string]any{"groups": slices.Clone(s.user(userID).groups)}, nil
}

func (s *storage) GetKeyByIDAndClientID(ctx context.Context, keyID, clientID string) (*jose.JSONWebKey, error) {
	return nil, errUnsupported
}

func (s *storage) ValidateJWTProfileScopes(ctx context.Context, userID string, scopes []string) ([]string, error) {
	return scopes, nil
}

func (s *storage) Health(context.Context) error { return nil }

// DeviceAuthorizationStorage.

func (s *storage) StoreDeviceAuthorization(ctx context.Context, clientID, deviceCode, userCode string, expires time.Time, scopes []string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.userCodes[userCode]; ok {
		return op.ErrDuplicateUserCode
	}
	s.deviceScopes = strings.Join(scopes, " ")
	d := &device{userCode: userCode, state: op.DeviceAuthorizationState{ClientID: clientID, Scopes: scopes, Expires: expires}}
	s.devices[deviceCode] = d
	s.userCodes[userCode] = deviceCode
	if u := s.autoApprove; u != nil {
		s.approveLocked(d, u)
	}
	return nil
}

func (s *storage) GetDeviceAuthorizatonState(ctx context.Context, clientID, deviceCode string) (*op.DeviceAuthorizationState, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	d, ok := s.devices[deviceCode]
	if !ok || d.state.ClientID != clientID {
		return nil, errors.New("oidctest: unknown device code")
	}
	st := d.state
	return &st, nil
}

func (s *storage) approve(userCode string, u *user, deny bool) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	dc, ok := s.userCodes[strings.ToUpper(strings.TrimSpace(userCode))]
	if !ok {
		return fmt.Errorf("oidctest: unknown user code %q", userCode)
	}
	d := s.devices[dc]
	if deny {
		d.state.Denied = true
		return nil
	}
	s.approveLocked(d, u)
	return nil
}

func (s *storage) approveLocked(d *device, u *user) {
	s.users[u.subject] = u
	d.state.Done = true
	d.state.Subject = u.subject
	d.state.AuthTime = time.Now()
	d.state.AMR = []string{"pwd"}
}

// refreshRequest implements op.RefreshTokenRequest.
type refreshRequest struct{ rt refreshToken }

func (r *refreshRequest) GetAMR() []string                 { return r.rt.amr }
func (r *refreshRequest) GetAudience() []string            { return r.rt.audience }
func (r *refreshRequest) GetAuthTime() time.Time           { return r.rt.authTime }
func (r *refreshRequest) GetClientID() string              { return r.rt.clientID }
func (r *refreshRequest) GetScopes() []string              { return r.rt.scopes }
func (r *refreshRequest) GetSubject() string               { return r.rt.subject }
func (r *refreshRequest) SetCurrentScopes(scopes []string) { r.rt.scopes = scopes }

// client is the public native client `modgate login` uses, or a web client of
// the authorization-code flow (web set), confidential when it has a secret.
type client struct {
	id           string
	web          bool
	secret       string
	redirectURIs []string
	lifetime     atomic.Int64 // nanoseconds; tests change it while the OP serves
}

func (c *client) GetID() string                    { return c.id }
func (c *client) RedirectURIs() []string           { return c.redirectURIs }
func (c *client) PostLogoutRedirectURIs() []string { return nil }
func (c *client) ApplicationType() op.ApplicationType {
	if c.web {
		return op.ApplicationTypeWeb
	}
	return op.ApplicationTypeNative
}
func (c *client) AuthMethod() oidc.AuthMethod {
	if c.secret != "" {
		return oidc.AuthMethodBasic
	}
	return oidc.AuthMethodNone
}
func (c *client) ResponseTypes() []oidc.ResponseType {
	return []oidc.ResponseType{oidc.ResponseTypeCode}
}
func (c *client) GrantTypes() []oidc.GrantType {
	if c.web {
		return []oidc.GrantType{oidc.GrantTypeCode, oidc.GrantTypeRefreshToken}
	}
	return []oidc.GrantType{oidc.GrantTypeDeviceCode, oidc.GrantTypeRefreshToken}
}
func (c *client) LoginURL(id string) string            { return "/login?id=" + id }
func (c *client) AccessTokenType() op.AccessTokenType  { return op.AccessTokenTypeBearer }
func (c *client) IDTokenLifetime() time.Duration       { return time.Duration(c.lifetime.Load()) }
func (c *client) DevMode() bool                        { return false }
func (c *client) IsScopeAllowed(scope string) bool     { return scope == "groups" }
func (c *client) IDTokenUserinfoClaimsAssertion() bool { return true }
func (c *client) ClockSkew() time.Duration             { return 0 }
func (c *client) RestrictAdditionalIdTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}
func (c *client) RestrictAdditionalAccessTokenScopes() func([]string) []string {
	return func(s []string) []string { return s }
}

// authRequest implements op.AuthRequest for the authorization-code flow.
type authRequest struct {
	id        string
	req       oidc.AuthRequest
	challenge *oidc.CodeChallenge
	created   time.Time
	subject   string
	authTime  time.Time
	done      bool
}

func (a *authRequest) GetID() string                         { return a.id }
func (a *authRequest) GetACR() string                        { return "" }
func (a *authRequest) GetAMR() []string                      { return []string{"pwd"} }
func (a *authRequest) GetAudience() []string                 { return []string{a.req.ClientID} }
func (a *authRequest) GetAuthTime() time.Time                { return a.authTime }
func (a *authRequest) GetClientID() string                   { return a.req.ClientID }
func (a *authRequest) GetCodeChallenge() *oidc.CodeChallenge { return a.challenge }
func (a *authRequest) GetNonce() string                      { return a.req.Nonce }
func (a *authRequest) GetRedirectURI() string                { return a.req.RedirectURI }
func (a *authRequest) GetResponseType() oidc.ResponseType    { return a.req.ResponseType }
func (a *authRequest) GetResponseMode() oidc.ResponseMode    { return a.req.ResponseMode }
func (a *authRequest) GetScopes() []string                   { return a.req.Scopes }
func (a *authRequest) GetState() string                      { return a.req.State }
func (a *authRequest) GetSubject() string                    { return a.subject }
func (a *authRequest) Done() bool                            { return a.done }
