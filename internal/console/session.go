package console

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/modgate/modgate/internal/identity"
)

// Cookie names carry the __Host- prefix: browsers then accept them only with
// Secure, Path=/ and no Domain, so no sibling host or plain-HTTP page can plant
// or overwrite them (RFC 6265bis §4.1.3.2).
const (
	sessionCookie = "__Host-modgate-console"
	loginCookie   = "__Host-modgate-console-login"
)

// keys are derived from the one configured session key, one per purpose, so a
// sealed login state can never be replayed as a session or a CSRF token.
type keys struct {
	session cipher.AEAD
	login   cipher.AEAD
	csrf    []byte
}

func deriveKeys(secret []byte) (*keys, error) {
	if len(secret) < 32 {
		return nil, errors.New("console: session key must be at least 32 bytes")
	}
	derive := func(purpose string) []byte {
		m := hmac.New(sha256.New, secret)
		m.Write([]byte("modgate console " + purpose))
		return m.Sum(nil)
	}
	aead := func(purpose string) (cipher.AEAD, error) {
		b, err := aes.NewCipher(derive(purpose))
		if err != nil {
			return nil, err
		}
		return cipher.NewGCM(b)
	}
	k := &keys{csrf: derive("csrf")}
	var err error
	if k.session, err = aead("session"); err != nil {
		return nil, err
	}
	if k.login, err = aead("login"); err != nil {
		return nil, err
	}
	return k, nil
}

// seal encrypts and authenticates v as JSON; the cookie name is additional data,
// so a value cannot move between cookies.
func seal(aead cipher.AEAD, name string, v any) (string, error) {
	plain, err := json.Marshal(v)
	if err != nil {
		return "", err
	}
	nonce := make([]byte, aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(aead.Seal(nonce, nonce, plain, []byte(name))), nil
}

func open(aead cipher.AEAD, name, value string, v any) error {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil || len(raw) < aead.NonceSize() {
		return errors.New("console: malformed cookie")
	}
	plain, err := aead.Open(nil, raw[:aead.NonceSize()], raw[aead.NonceSize():], []byte(name))
	if err != nil {
		return errors.New("console: cookie not sealed by this console's key")
	}
	return json.Unmarshal(plain, v)
}

// session is what the session cookie holds: the identity established at sign-in.
// The cookie is the whole session — nothing is stored server-side — so replicas
// sharing the key share sessions, and signing out deletes the cookie.
type session struct {
	ID      string          `json:"sid"` // random; binds CSRF tokens
	Subject string          `json:"sub"`
	Teams   []string        `json:"teams,omitempty"`
	Method  identity.Method `json:"method"`
	Expires int64           `json:"exp"` // Unix seconds
}

func (s *session) identity() *identity.Identity {
	return &identity.Identity{Subject: s.Subject, Teams: s.Teams, Method: s.Method}
}

// loginState is what the login cookie holds between /ui/login and /ui/callback.
type loginState struct {
	State    string `json:"state"`
	Verifier string `json:"verifier"` // PKCE code verifier (RFC 7636)
	Nonce    string `json:"nonce"`
	Next     string `json:"next"`
	Expires  int64  `json:"exp"`
}

func setCookie(w http.ResponseWriter, name, value string, expires time.Time) {
	c := &http.Cookie{
		Name:     name,
		Value:    value,
		Path:     "/",
		Secure:   true,
		HttpOnly: true,
		// Lax, not Strict: the IdP's redirect to /ui/callback is a cross-site
		// top-level navigation that must carry the login cookie.
		SameSite: http.SameSiteLaxMode,
	}
	if expires.IsZero() {
		c.MaxAge = -1
	} else {
		c.Expires = expires
		c.MaxAge = int(time.Until(expires).Seconds())
		if c.MaxAge <= 0 {
			c.MaxAge = -1
		}
	}
	http.SetCookie(w, c)
}

// csrfToken binds a form to the caller: to the session for signed-in users, to
// the certificate for client-certificate users (who have no session).
func (k *keys) csrfToken(binding string) string {
	m := hmac.New(sha256.New, k.csrf)
	m.Write([]byte(binding))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

func (k *keys) validCSRF(binding, token string) bool {
	if binding == "" || token == "" {
		return false
	}
	return hmac.Equal([]byte(k.csrfToken(binding)), []byte(token))
}

func randomString(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}
