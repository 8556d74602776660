package auth

// Refusal reasons specific to modgate API tokens, beyond those in reasons.go.
const (
	// ReasonAPITokenMalformed: the secret has the mgt_ prefix but not the shape of
	// a modgate API token (truncated when copied, edited by hand). Refused without
	// a database lookup.
	ReasonAPITokenMalformed = "API token malformed"
	// ReasonAPITokenStoreUnavailable: the token store (PostgreSQL) cannot be
	// reached; a derrors.Unavailable, not a refusal of the token.
	ReasonAPITokenStoreUnavailable = "API token store unavailable"
)
