package main

import (
	"context"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/auth"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
)

// Every refusal README.md quotes is what the shipped policy answers, word for
// word, so the examples cannot drift from policy/ (a team the policy shares a
// module with must not be shown refused).
func TestReadmeRefusalsMatchPolicy(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	eng, err := policy.Load(context.Background(), "../../policy", policy.Options{SkipTests: true, CacheSize: -1, TimeResolution: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	refusal := regexp.MustCompile("`server response: (team (\\S+) may not (pull|publish|delete) ([^@:\\s]+)(?:@([^:\\s]+))?: [^`]+)`")
	examples := refusal.FindAllStringSubmatch(string(readme), -1)
	if len(examples) == 0 {
		t.Fatal("README.md quotes no policy refusal")
	}
	for _, m := range examples {
		quoted, team, verb, mod, version := m[1], m[2], m[3], m[4], m[5]
		if version == "" {
			version = "v1.0.0"
		}
		action := map[string]policy.Action{"pull": policy.ActionZip, "publish": policy.ActionPublish, "delete": policy.ActionDelete}[verb]
		route := policy.RoutePublic
		if strings.HasPrefix(mod, "corp.example/") {
			route = policy.RoutePrivate
		}
		d, err := eng.Decide(context.Background(), policy.Input{
			Subject: "readme", Teams: []string{team}, Method: identity.MethodOIDC,
			Action: action, Module: mod, Version: version, Route: route,
		})
		if err != nil {
			t.Fatal(err)
		}
		if d.Allow {
			t.Errorf("README.md says %q, but the shipped policy allows it (%v)", quoted, d.Reasons)
			continue
		}
		if d.Reason() != quoted {
			t.Errorf("README.md quotes\n  %s\nthe shipped policy answers\n  %s", quoted, d.Reason())
		}
	}
	// The token refusal quoted beside them is the authenticator's own wording.
	if !strings.Contains(string(readme), "`server response: "+auth.ReasonAPITokenExpired+"`") {
		t.Errorf("README.md's token refusal is not auth.ReasonAPITokenExpired (%q)", auth.ReasonAPITokenExpired)
	}
}
