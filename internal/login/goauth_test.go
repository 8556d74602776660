package login

import (
	"strings"
	"testing"
)

func TestGOAUTHAdvice(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, goauth, want string // want: a substring of the advice; "" none
	}{
		{name: "ok/documented", goauth: GOAUTH},
		{name: "ok/absolute-path", goauth: "/usr/local/bin/modgate auth --ca-file /etc/ca.pem;netrc"},
		{name: "ok/windows-exe", goauth: `C:\tools\modgate.exe auth;netrc`},
		{name: "ok/helper-only", goauth: "modgate auth"},
		{name: "fix/netrc-first", goauth: "netrc;modgate auth", want: "Put the helper first"},
		{name: "fix/default-netrc", goauth: "netrc", want: "go env -w GOAUTH='modgate auth;netrc'"},
		{name: "fix/off", goauth: "off", want: "GOAUTH is off"},
		{name: "fix/other-helper", goauth: "git /src;notmodgate auth", want: "refresh the token"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := GOAUTHAdvice(tt.goauth)
			if tt.want == "" && got != "" || tt.want != "" && !strings.Contains(got, tt.want) {
				t.Errorf("GOAUTHAdvice(%q) = %q, want %q", tt.goauth, got, tt.want)
			}
		})
	}
}
