package login

import "strings"

// GOAUTHAdvice looks at a GOAUTH value (as `go env GOAUTH` prints it) and
// returns what to change for the refreshed token to be used, or "" when the
// helper comes before netrc.
//
// The go command runs the GOAUTH entries from right to left and each entry's
// credentials overwrite those stored for the same URL prefix, so the leftmost
// entry that supplies credentials wins (cmd/go/internal/auth.runGoAuth). With
// netrc left of the helper, the .netrc token `modgate login` wrote is sent
// even after it expired and the helper refreshed it.
func GOAUTHAdvice(goauth string) string {
	helper, netrcAt := -1, -1
	for i, entry := range strings.Split(goauth, ";") {
		words := strings.Fields(entry)
		switch {
		case len(words) == 0:
		case words[0] == "netrc":
			if netrcAt < 0 {
				netrcAt = i
			}
		case len(words) >= 2 && words[1] == "auth" && isModgate(words[0]):
			if helper < 0 {
				helper = i
			}
		}
	}
	switch {
	case strings.TrimSpace(goauth) == "off":
		return "GOAUTH is off: the go command sends no credentials. Enable the helper:\n\n    go env -w GOAUTH='" + GOAUTH + "'\n"
	case helper < 0:
		return "Let the go command refresh the token when it expires (Go 1.24+):\n\n    go env -w GOAUTH='" + GOAUTH + "'\n"
	case netrcAt >= 0 && netrcAt < helper:
		return "GOAUTH lists netrc before 'modgate auth', so the go command keeps sending the .netrc token after it expires (the leftmost GOAUTH entry wins). Put the helper first:\n\n    go env -w GOAUTH='" + GOAUTH + "'\n"
	}
	return ""
}

// isModgate reports whether a GOAUTH command names the modgate binary, by
// either kind of path separator (the value may come from another OS's shell).
func isModgate(cmd string) bool {
	if i := strings.LastIndexAny(cmd, `/\`); i >= 0 {
		cmd = cmd[i+1:]
	}
	return strings.TrimSuffix(cmd, ".exe") == "modgate"
}
