package auth

import (
	"errors"
	"net/http"
	"strings"
)

var (
	errNoCredentials = errors.New("no Authorization header")
	errMalformed     = errors.New("malformed Authorization header")
)

// credential returns the secret a request presents, from either form the go
// command and CI tools send:
//
//   - "Authorization: Bearer <token>" — GOAUTH helpers (`modgate auth`), curl, CI.
//   - "Authorization: Basic base64(login:password)" — what the go command makes
//     from a ~/.netrc entry "machine host:port login L password P". The password
//     is the token. The login is ignored: the token alone says who the caller is
//     (an ID token names its subject, an API token its owner), so requiring the
//     login to match would add a way to fail without adding any security, and
//     `modgate login` writes a fixed login ("modgate") that needs no upkeep.
//
// Only one Authorization header is accepted: two would leave it ambiguous which
// credential was meant. The returned error never contains the secret.
func credential(r *http.Request) (string, error) {
	values := r.Header.Values("Authorization")
	switch len(values) {
	case 0:
		return "", errNoCredentials
	case 1:
	default:
		return "", errMalformed
	}
	scheme, rest, ok := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !ok {
		return "", errMalformed
	}
	switch {
	case strings.EqualFold(scheme, "Bearer"):
		tok := strings.TrimSpace(rest)
		if tok == "" || strings.ContainsAny(tok, " \t") {
			return "", errMalformed
		}
		return tok, nil
	case strings.EqualFold(scheme, "Basic"):
		_, password, ok := r.BasicAuth()
		if !ok || password == "" || strings.ContainsAny(password, " \t\r\n") {
			return "", errMalformed
		}
		return password, nil
	default:
		return "", errMalformed
	}
}
