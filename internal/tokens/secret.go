package tokens

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"fmt"
	"strings"

	"github.com/modgate/modgate/internal/auth"
)

// A secret is "mgt_" + id + "_" + random:
//
//   - id: 10 random bytes (80 bits) in lowercase base32, 16 characters. Public: it
//     names the token in listings, the audit trail and `modgate token revoke`, and
//     lets verification find the row with a primary-key lookup.
//   - random: 32 random bytes (256 bits), 52 characters. Never stored; only
//     SHA-256 of the whole secret is.
//
// Lowercase base32 (a-z, 2-7) has no "_" or "-", so a double click selects the
// whole token and the parts split unambiguously. Secret scanners match
//
//	\bmgt_[a-z2-7]{16}_[a-z2-7]{52}\b
//
// (documented in docs/authentication.md).
const (
	idBytes     = 10
	randomBytes = 32
	idLen       = 16 // base32 of idBytes, unpadded
	randomLen   = 52 // base32 of randomBytes, unpadded
	secretLen   = len(auth.APITokenPrefix) + idLen + 1 + randomLen
)

// SecretPattern is a regular expression matching modgate API token secrets, for
// secret scanners.
const SecretPattern = `\bmgt_[a-z2-7]{16}_[a-z2-7]{52}\b`

var b32 = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newSecret returns a fresh token id and its secret.
func newSecret() (id, secret string, err error) {
	var buf [idBytes + randomBytes]byte
	if _, err := rand.Read(buf[:]); err != nil {
		return "", "", fmt.Errorf("tokens: reading random bytes: %w", err)
	}
	id = b32.EncodeToString(buf[:idBytes])
	return id, auth.APITokenPrefix + id + "_" + b32.EncodeToString(buf[idBytes:]), nil
}

// hashSecret is what the database stores and the cache is keyed by. SHA-256 is
// enough: the secret carries 256 random bits, so there is nothing for a slow hash
// to protect against a dictionary.
func hashSecret(secret string) [sha256.Size]byte {
	return sha256.Sum256([]byte(secret))
}

// parseSecret returns the token id in secret, or false when secret does not
// have the shape of a modgate API token.
func parseSecret(secret string) (id string, ok bool) {
	if len(secret) != secretLen || !strings.HasPrefix(secret, auth.APITokenPrefix) {
		return "", false
	}
	rest := secret[len(auth.APITokenPrefix):]
	if rest[idLen] != '_' || !isBase32(rest[:idLen]) || !isBase32(rest[idLen+1:]) {
		return "", false
	}
	return rest[:idLen], true
}

// ParseID returns the token id named by s: either an id as `modgate token list`
// prints it, or a whole secret (revoking a leaked secret found in a log should
// not require looking up its id first). The result never contains the random
// part of a secret.
func ParseID(s string) (string, bool) {
	if id, ok := parseSecret(s); ok {
		return id, true
	}
	if len(s) == idLen && isBase32(s) {
		return s, true
	}
	return "", false
}

func isBase32(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('a' <= c && c <= 'z' || '2' <= c && c <= '7') {
			return false
		}
	}
	return true
}
