package auth

import (
	"context"
	"errors"
	"net/http"
	"strings"
)

var (
	errNoCredentials = errors.New("no Authorization header")
	errMalformed     = errors.New("malformed Authorization header")
)

// NetrcLogin is the login `modgate login` writes to .netrc when it has no
// access token to put there; it carries nothing.
const NetrcLogin = "modgate"

// credential returns the secret a request presents, and the OAuth access token
// that may come with it, from either form the go command and CI tools send:
//
//   - "Authorization: Bearer <token>" — GOAUTH helpers (`modgate auth`), curl, CI.
//   - "Authorization: Basic base64(login:password)" — what the go command makes
//     from a ~/.netrc entry "machine host:port login L password P". The password
//     is the token. The login is not an identity: the token alone says who the
//     caller is (an ID token names its subject, an API token its owner). When it
//     is not the fixed NetrcLogin, it is taken as the OAuth access token issued
//     with the ID token (`modgate login` and `modgate auth` put it there), which
//     the OIDC verifier presents to the IdP's userinfo endpoint when the ID token
//     carries no groups. It grants nothing by itself: userinfo must answer for
//     the ID token's subject (OIDC Core 5.3.2).
//
// Only one Authorization header is accepted: two would leave it ambiguous which
// credential was meant. The returned error never contains the secret.
func credential(r *http.Request) (secret, accessToken string, err error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", "", errNoCredentials
	case 1:
	default:
		return "", "", errMalformed
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok {
		return "", "", errMalformed
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		tok := strings.TrimSpace(rest)
		if tok == "" || strings.ContainsAny(tok, " \t") {
			return "", "", errMalformed
		}
		return tok, "", nil
	case strings.EqualFold(scheme, "Basic"):
		user, password, ok := r.BasicAuth()
		if !ok || password == "" || strings.ContainsAny(password, " \t\r\n") {
			return "", "", errMalformed
		}
		if user == NetrcLogin || strings.ContainsAny(user, " \t\r\n") {
			user = ""
		}
		return password, user, nil
	default:
		return "", "", errMalformed
	}
}

type accessTokenKey struct{}

// WithAccessToken returns ctx carrying the OAuth access token issued with the
// ID token about to be verified, for the userinfo endpoint.
func WithAccessToken(ctx context.Context, accessToken string) context.Context {
	if accessToken == "" {
		return ctx
	}
	return context.WithValue(ctx, accessTokenKey{}, accessToken)
}

func accessTokenFrom(ctx context.Context) string {
	s, _ := ctx.Value(accessTokenKey{}).(string)
	return s
}
