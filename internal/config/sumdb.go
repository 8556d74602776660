package config

import (
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/note"
)

// defaultSumDBKey is sum.golang.org's verifier key, as built into the go command.
const defaultSumDBKey = "sum.golang.org+033de0ae+Ac4zctda0e5eza+HJyk9SxEdh+s3Ux18htTTAD8OuAn8"

func (s SumDB) validate() []string {
	var errs []string
	if s.Verify {
		if _, err := note.NewVerifier(strings.TrimSpace(s.Key)); err != nil {
			errs = append(errs, fmt.Sprintf("sumdb.key: not a checksum database verifier key (<name>+<hash>+<key>): %v", err))
		}
	}
	for _, p := range s.NoVerify {
		if p == "" || strings.ContainsAny(p, ", \t") {
			errs = append(errs, fmt.Sprintf("sumdb.no_verify: invalid pattern %q (one GONOSUMDB-style path prefix pattern per entry)", p))
		}
	}
	return errs
}

// NoVerifyPatterns returns sumdb.no_verify as one GONOSUMDB-style list.
func (s SumDB) NoVerifyPatterns() string { return strings.Join(s.NoVerify, ",") }
