package console

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"strings"
)

// tokenNonce reads the nonce claim of a JWT whose signature has already been
// verified.
func tokenNonce(raw string) (string, error) {
	parts := strings.Split(raw, ".")
	if len(parts) != 3 {
		return "", errors.New("console: malformed ID token")
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		return "", err
	}
	var claims struct {
		Nonce string `json:"nonce"`
	}
	if err := json.Unmarshal(payload, &claims); err != nil {
		return "", err
	}
	return claims.Nonce, nil
}
