package policy

import (
	"context"
	"testing"
)

// TestDecideCaseVariants: ownership, sharing and the deny list match module
// paths case-insensitively, whichever side (request or data file) uses upper
// case, while the reason quotes the path as requested.
func TestDecideCaseVariants(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t, defaultDir)
	writeFile(t, dir, "denylist.yaml", `
denylist:
  github.com/sirupsen/logrus: {reason: SEC-2001}
  github.com/BurntSushi/Evil: {reason: SEC-2002}
`)
	writeFile(t, dir, "zz-owners.yaml", `
owners:
  corp.example/Research: {team: research, shared_with: [web]}
`)
	e := loadEngine(t, dir, Options{SkipTests: true})
	platform := member("pat@corp.example", "platform")
	web := member("wes@corp.example", "web")
	tests := []struct {
		name   string
		in     Input
		allow  bool
		reason string
	}{
		{name: "deny/lowercase-entry-exact", in: pull(platform, ActionZip, RoutePublic, "github.com/sirupsen/logrus", "v1.0.0"),
			reason: "team platform may not pull github.com/sirupsen/logrus@v1.0.0: github.com/sirupsen/logrus is deny-listed: SEC-2001"},
		{name: "deny/lowercase-entry-variant", in: pull(platform, ActionZip, RoutePublic, "github.com/Sirupsen/logrus", "v1.0.0"),
			reason: "team platform may not pull github.com/Sirupsen/logrus@v1.0.0: github.com/sirupsen/logrus is deny-listed: SEC-2001"},
		{name: "deny/lowercase-entry-variant-list", in: pull(platform, ActionList, RoutePublic, "github.com/SIRUPSEN/LOGRUS", ""),
			reason: "team platform may not pull github.com/SIRUPSEN/LOGRUS: github.com/sirupsen/logrus is deny-listed: SEC-2001"},
		{name: "deny/mixed-case-entry-lowercase-request", in: pull(platform, ActionZip, RoutePublic, "github.com/burntsushi/evil/v2", "v2.0.0"),
			reason: "team platform may not pull github.com/burntsushi/evil/v2@v2.0.0: github.com/burntsushi/evil is deny-listed: SEC-2002"},
		{name: "ok/not-a-boundary", in: pull(platform, ActionZip, RoutePublic, "github.com/Sirupsen/logrusx", "v1.0.0"), allow: true},
		{name: "deny/owner-variant", in: pull(platform, ActionZip, RoutePrivate, "corp.example/Payments/ledger", "v1.1.0"),
			reason: "team platform may not pull corp.example/Payments/ledger@v1.1.0: owned by team payments"},
		{name: "ok/owner-pulls-variant", in: pull(member("al", "payments"), ActionZip, RoutePrivate, "corp.example/PAYMENTS/ledger", "v1.1.0"), allow: true},
		{name: "ok/mixed-case-owner-lowercase-request", in: pull(member("rae", "research"), ActionZip, RoutePrivate, "corp.example/research/x", "v1.0.0"), allow: true},
		{name: "ok/mixed-case-owner-shared", in: pull(web, ActionZip, RoutePrivate, "corp.example/RESEARCH/x", "v1.0.0"), allow: true},
		{name: "deny/mixed-case-owner-other-team", in: pull(platform, ActionZip, RoutePrivate, "corp.example/research/x", "v1.0.0"),
			reason: "team platform may not pull corp.example/research/x@v1.0.0: owned by team research"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d, err := e.Decide(context.Background(), tt.in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow != tt.allow {
				t.Fatalf("allow = %v (%q), want %v", d.Allow, d.Reasons, tt.allow)
			}
			if !tt.allow && (len(d.Reasons) == 0 || d.Reasons[0] != tt.reason) {
				t.Errorf("reason = %q\nwant %q", d.Reasons, tt.reason)
			}
		})
	}
}

func TestFoldPath(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"":                           "",
		"github.com/sirupsen/logrus": "github.com/sirupsen/logrus",
		"github.com/Sirupsen/logrus": "github.com/sirupsen/logrus",
		"Corp.Example/Ä/X":           "corp.example/Ä/x", // only ASCII, as the protocol's case encoding
	} {
		if got := FoldPath(in); got != want {
			t.Errorf("FoldPath(%q) = %q, want %q", in, got, want)
		}
	}
}
