package auth

// Public one-line reasons for refused credentials. They are part of modgate's
// interface: the go command prints them to the developer ("server response: token
// expired"), the audit trail records them, and tests compare against them. None of
// them ever contains the presented secret. A TokenVerifier reports its refusals with
// the Reason*APIToken* values wrapped as derrors.Unauthenticated.
const (
	ReasonNoCredentials     = "no credentials"
	ReasonMalformed         = "malformed credentials"
	ReasonTokenMalformed    = "token malformed"
	ReasonTokenExpired      = "token expired"
	ReasonTokenNotYetValid  = "token not yet valid"
	ReasonTokenAudience     = "token audience not accepted"
	ReasonTokenIssuer       = "token issuer not accepted"
	ReasonTokenUnknownKey   = "token signed by unknown key"
	ReasonTokenSignature    = "token signature invalid"
	ReasonTokenNoSubject    = "token has no subject"
	ReasonEmailNotVerified  = "token email not verified"
	ReasonAPITokensDisabled = "API tokens are not accepted"
	ReasonOIDCDisabled      = "OIDC tokens are not accepted"
	ReasonAPITokenUnknown   = "API token not recognised"
	ReasonAPITokenRevoked   = "API token revoked"
	ReasonAPITokenExpired   = "API token expired"
	ReasonIdPUnavailable    = "identity provider unavailable"
	ReasonTooManyFailures   = "too many failed authentication attempts"
)
