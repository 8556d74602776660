// Package identity defines who made a request, as established by authentication.
// It is the one type that auth produces and that policy, audit and the server consume.
package identity

// Method says how an identity was established.
type Method string

const (
	MethodAnonymous Method = "anonymous" // only where authentication is off (loopback development)
	MethodMTLS      Method = "mtls"      // verified client certificate
	MethodOIDC      Method = "oidc"      // OIDC ID/access token
	MethodToken     Method = "token"     // modgate API token
	MethodInternal  Method = "internal"  // modgate's own background work (scheduled mirror sync)
)

// Identity is a verified caller.
type Identity struct {
	Subject string   // stable subject: certificate identity, OIDC sub/email, token subject
	Teams   []string // teams the caller belongs to, as mapped by auth
	Method  Method
	// CertFingerprint is the SHA-256 of the client certificate (hex), when one was presented.
	CertFingerprint string
	// TokenID identifies the API token used (never the secret), when one was used.
	TokenID string
	// Scopes limits an API token to some actions; empty means unrestricted.
	Scopes []string
}
