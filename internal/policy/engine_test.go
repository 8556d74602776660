package policy

import (
	"context"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/open-policy-agent/opa/v1/ast"
	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

var testNow = time.Date(2026, 11, 25, 10, 0, 0, 0, time.UTC)

// loadEngine loads the policy in dir with a clock fixed at testNow.
func loadEngine(t testing.TB, dir string, opts Options) *Engine {
	t.Helper()
	if opts.Now == nil {
		opts.Now = func() time.Time { return testNow }
	}
	e, err := Load(context.Background(), dir, opts)
	if err != nil {
		t.Fatalf("Load(%s): %v", dir, err)
	}
	return e
}

// copyPolicy copies the policy directory into a temporary one the test may edit.
func copyPolicy(t testing.TB, src string) string {
	t.Helper()
	dst := t.TempDir()
	entries, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

func writeFile(t testing.TB, dir, name, content string) {
	t.Helper()
	if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

func member(subject string, teams ...string) *identity.Identity {
	return &identity.Identity{Subject: subject, Teams: teams, Method: identity.MethodOIDC}
}

func pull(id *identity.Identity, action Action, route Route, mod, version string) Input {
	in := NewInput(id, action)
	in.Route, in.Module, in.Version = route, mod, version
	return in
}

func TestDecideDefaultPolicy(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, defaultDir, Options{})
	cooldownDir := copyPolicy(t, defaultDir)
	writeFile(t, cooldownDir, "settings.yaml", `
settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  cooldown: {enabled: true, hours: 72, exempt: [golang.org/x]}
`)
	// The shipped Rego tests assume the shipped settings: skip them here.
	withCooldown := loadEngine(t, cooldownDir, Options{SkipTests: true})

	alice := member("alice@corp.example", "payments")
	bob := member("bob@corp.example", "checkout")
	carol := member("carol@corp.example", "web")
	admin := member("root@corp.example", "platform-admins")
	auditor := member("eve@corp.example", "security-audit")
	young := func(in Input) Input { in.VersionTime = "2026-11-25T08:00:00Z"; return in }
	old := func(in Input) Input { in.VersionTime = "2026-11-01T08:00:00Z"; return in }

	tests := []struct {
		name   string
		engine *Engine
		in     Input
		allow  bool
		reason string // the first reason, for denies
	}{
		{name: "ok/owner-pulls-under-its-prefix", in: pull(alice, ActionZip, RoutePrivate, "corp.example/payments/ledger", "v1.2.0"), allow: true},
		{name: "ok/owner-lists", in: pull(alice, ActionList, RoutePrivate, "corp.example/payments/ledger", ""), allow: true},
		{
			name:   "deny/other-team",
			in:     pull(alice, ActionZip, RoutePrivate, "corp.example/secret/x", "v1.0.0"),
			reason: "team payments may not pull corp.example/secret/x@v1.0.0: owned by team platform",
		},
		{
			name:   "deny/other-team-list",
			in:     pull(alice, ActionList, RoutePrivate, "corp.example/secret/x", ""),
			reason: "team payments may not pull corp.example/secret/x: owned by team platform",
		},
		{name: "ok/shared-team", in: pull(bob, ActionMod, RoutePrivate, "corp.example/payments/api/v2", "v2.0.1"), allow: true},
		{name: "ok/in-two-shared-teams", in: pull(member("dan", "risk", "checkout"), ActionMod, RoutePrivate, "corp.example/payments/api/v2", "v2.0.1"), allow: true},
		{
			name:   "deny/not-shared-with-team",
			in:     pull(carol, ActionMod, RoutePrivate, "corp.example/payments/api/v2", "v2.0.1"),
			reason: "team web may not pull corp.example/payments/api/v2@v2.0.1: owned by team payments",
		},
		{name: "ok/public-module", in: pull(carol, ActionInfo, RoutePublic, "github.com/pkg/errors", "v0.9.1"), allow: true},
		{
			name:   "deny/deny-listed-for-everyone",
			in:     pull(admin, ActionZip, RoutePublic, "github.com/evil-typosquat/uuid", "v1.0.0"),
			reason: "team platform-admins may not pull github.com/evil-typosquat/uuid@v1.0.0: github.com/evil-typosquat is deny-listed: typosquatting account, see SEC-1042",
		},
		{
			name:   "deny/deny-listed-version",
			in:     pull(alice, ActionZip, RoutePublic, "github.com/example/leftpad", "v1.3.1"),
			reason: "team payments may not pull github.com/example/leftpad@v1.3.1: version is deny-listed: v1.3.1 contains a credential stealer (CVE-2026-0001); use v1.3.2",
		},
		{name: "ok/other-version-of-deny-listed", in: pull(alice, ActionZip, RoutePublic, "github.com/example/leftpad", "v1.3.2"), allow: true},
		{name: "ok/publish-by-owner", in: pull(alice, ActionPublish, RoutePrivate, "corp.example/payments/ledger", "v1.3.0"), allow: true},
		{
			name:   "deny/publish-by-shared-team",
			in:     pull(bob, ActionPublish, RoutePrivate, "corp.example/payments/ledger", "v1.3.0"),
			reason: "team checkout may not publish corp.example/payments/ledger@v1.3.0: owned by team payments",
		},
		{
			name:   "deny/publish-by-admin",
			in:     pull(admin, ActionPublish, RoutePrivate, "corp.example/payments/ledger", "v1.3.0"),
			reason: "team platform-admins may not publish corp.example/payments/ledger@v1.3.0: owned by team payments",
		},
		{name: "ok/delete-by-admin", in: pull(admin, ActionDelete, RoutePrivate, "corp.example/payments/ledger", "v1.3.0"), allow: true},
		{
			name:   "deny/delete-by-owner",
			in:     pull(alice, ActionDelete, RoutePrivate, "corp.example/payments/ledger", "v1.3.0"),
			reason: "team payments may not delete corp.example/payments/ledger@v1.3.0: only the admin teams (platform-admins) may",
		},
		{name: "ok/admin-by-admin", in: NewInput(admin, ActionAdmin), allow: true},
		{name: "deny/admin-by-auditor", in: NewInput(auditor, ActionAdmin), reason: "team security-audit may not administer modgate: only the admin teams (platform-admins) may"},
		{name: "ok/audit-read-by-auditor", in: NewInput(auditor, ActionAuditRead), allow: true},
		{name: "ok/audit-read-by-admin", in: NewInput(admin, ActionAuditRead), allow: true},
		{
			name:   "deny/audit-read-by-developer",
			in:     NewInput(alice, ActionAuditRead),
			reason: "team payments may not read the audit trail: only auditors (security-audit) and admins may",
		},
		{name: "ok/cooldown-off-young-version", in: young(pull(alice, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1")), allow: true},
		{
			name:   "deny/cooldown-on-young-version",
			engine: withCooldown,
			in:     young(pull(alice, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1")),
			reason: "team payments may not pull github.com/pkg/errors@v0.9.1 yet: it was published less than 72 hours ago (cool-down until 2026-11-28T08:00:00Z)",
		},
		{name: "ok/cooldown-on-old-version", engine: withCooldown, in: old(pull(alice, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1")), allow: true},
		{name: "ok/cooldown-on-unknown-time", engine: withCooldown, in: pull(alice, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1"), allow: true},
		{name: "ok/cooldown-on-exempt-prefix", engine: withCooldown, in: young(pull(alice, ActionZip, RoutePublic, "golang.org/x/mod", "v0.41.0")), allow: true},
		{name: "ok/cooldown-on-private", engine: withCooldown, in: young(pull(alice, ActionZip, RoutePrivate, "corp.example/payments/ledger", "v1.2.0")), allow: true},
		{name: "ok/anonymous-public", in: pull(nil, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1"), allow: true},
		{
			name:   "deny/anonymous-private",
			in:     pull(nil, ActionZip, RoutePrivate, "corp.example/platform/log", "v1.0.0"),
			reason: "anonymous callers may not pull corp.example/platform/log@v1.0.0: owned by team platform",
		},
		{
			name:   "deny/anonymous-when-switched-off",
			engine: withCooldown, // its settings.yaml leaves anonymous at the default, deny
			in:     pull(nil, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1"),
			reason: "authentication required: run `modgate login` or use a client certificate or API token",
		},
		{
			name: "deny/token-scope",
			in: func() Input {
				id := member("ci@corp.example", "payments")
				id.Method, id.Scopes = identity.MethodToken, []string{"pull"}
				return pull(id, ActionPublish, RoutePrivate, "corp.example/payments/ledger", "v1.3.0")
			}(),
			reason: `team payments may not publish corp.example/payments/ledger@v1.3.0: the token lacks the "publish" scope`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			eng := tt.engine
			if eng == nil {
				eng = e
			}
			d, err := eng.Decide(context.Background(), tt.in)
			if err != nil {
				t.Fatalf("Decide: %v", err)
			}
			if d.Allow != tt.allow {
				t.Fatalf("Allow = %v, want %v (reasons %q)", d.Allow, tt.allow, d.Reasons)
			}
			if d.ID == "" || d.Revision != eng.Revision() {
				t.Errorf("ID = %q, Revision = %q (engine %q)", d.ID, d.Revision, eng.Revision())
			}
			if len(d.Reasons) == 0 {
				t.Errorf("no reasons")
			}
			if tt.allow {
				if err := d.Err(); err != nil {
					t.Errorf("Err() = %v for an allow", err)
				}
				return
			}
			if d.Reason() != tt.reason {
				t.Errorf("reason:\n got %q\nwant %q", d.Reason(), tt.reason)
			}
			err = d.Err()
			if !errors.Is(err, derrors.PermissionDenied) || derrors.Status(err) != http.StatusForbidden {
				t.Errorf("Err() = %v (status %d), want PermissionDenied/403", err, derrors.Status(err))
			}
			if got := derrors.PublicMessage(err); got != tt.reason {
				t.Errorf("public message %q, want the reason", got)
			}
			if !strings.Contains(err.Error(), d.ID) {
				t.Errorf("Err() = %q does not name decision %s for the log", err, d.ID)
			}
		})
	}
}

func TestDecideRejectsBadInput(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, defaultDir, Options{})
	tests := []struct {
		name string
		in   Input
	}{
		{"fail/unknown-action", pull(member("a", "payments"), "frobnicate", RoutePublic, "example.com/m", "v1.0.0")},
		{"fail/unknown-route", pull(member("a", "payments"), ActionZip, "elsewhere", "example.com/m", "v1.0.0")},
		{"fail/bad-version-time", func() Input {
			in := pull(member("a", "payments"), ActionZip, RoutePublic, "example.com/m", "v1.0.0")
			in.VersionTime = "yesterday"
			return in
		}()},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			_, err := e.Decide(context.Background(), tt.in)
			if !errors.Is(err, derrors.InvalidArgument) {
				t.Fatalf("Decide = %v, want InvalidArgument", err)
			}
		})
	}
}

func TestDecisionCache(t *testing.T) {
	t.Parallel()
	reg := prometheus.NewRegistry()
	e := loadEngine(t, defaultDir, Options{Registerer: reg})
	ctx := context.Background()
	in := pull(member("alice", "payments", "checkout"), ActionZip, RoutePrivate, "corp.example/secret/x", "v1.0.0")

	first, err := e.Decide(ctx, in)
	if err != nil || first.Cached {
		t.Fatalf("first Decide = %+v, %v; want an uncached decision", first, err)
	}
	// Same question, teams in another order, another client address (the
	// default policy does not read it): a hit with the same answer.
	in.Teams = []string{"checkout", "payments"}
	in.ClientAddr = "198.51.100.7"
	second, err := e.Decide(ctx, in)
	if err != nil || !second.Cached {
		t.Fatalf("second Decide = %+v, %v; want a cached decision", second, err)
	}
	if second.Allow != first.Allow || !slices.Equal(second.Reasons, first.Reasons) || second.ID == first.ID {
		t.Errorf("cached decision %+v differs from %+v (or reuses its ID)", second, first)
	}
	second.Reasons[0] = "scribbled"
	third, _ := e.Decide(ctx, in)
	if third.Reasons[0] != first.Reasons[0] {
		t.Errorf("modifying a returned decision changed the cache: %q", third.Reasons[0])
	}
	// The next minute: a decision on a private module cannot depend on the
	// time (only the cool-down reads it, and it judges public versions), so
	// the cached one answers (TestDecisionCacheTime has the rest).
	in.Time = testNow.Add(time.Minute)
	if d, _ := e.Decide(ctx, in); !d.Cached {
		t.Errorf("time-independent decision in the next minute was evaluated again")
	}

	if got := metricValue(t, reg, "modgate_policy_decisions_total", "hit", "deny"); got != 3 {
		t.Errorf("deny/hit decisions = %v, want 3", got)
	}
	if got := metricValue(t, reg, "modgate_policy_decisions_total", "miss", "deny"); got != 1 {
		t.Errorf("deny/miss decisions = %v, want 1", got)
	}
}

func TestDecisionCacheBounded(t *testing.T) {
	t.Parallel()
	c := newDecisionCache(100)
	for i := range 1000 {
		c.put(strings.Repeat("k", i+1), verdict{allow: true})
	}
	if n := c.len(); n > 100 {
		t.Errorf("cache holds %d entries, max 100", n)
	}
	if _, ok := c.get([]byte(strings.Repeat("k", 1000))); !ok {
		t.Errorf("most recent entry evicted")
	}
	if _, ok := c.get([]byte("k")); ok {
		t.Errorf("oldest entry still cached")
	}
}

func TestCacheKeyFollowsPolicyInputs(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	writeFile(t, dir, "authz.rego", `package modgate.authz
decision := {"allow": input.client_addr == "192.0.2.1", "reasons": []}
`)
	e := loadEngine(t, dir, Options{})
	in := pull(member("a"), ActionZip, RoutePublic, "example.com/m", "v1.0.0")
	for _, addr := range []string{"192.0.2.1", "192.0.2.2"} {
		in.ClientAddr = addr
		d, err := e.Decide(context.Background(), in)
		if err != nil {
			t.Fatal(err)
		}
		if want := addr == "192.0.2.1"; d.Allow != want || d.Cached {
			t.Errorf("client %s: Allow = %v, Cached = %v; want %v, uncached", addr, d.Allow, d.Cached, want)
		}
		if d.Reason() != "denied by policy" && !d.Allow {
			t.Errorf("deny without reasons got reason %q", d.Reason())
		}
	}
}

func TestFilterVersions(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t, defaultDir)
	writeFile(t, dir, "settings.yaml", `
settings:
  anonymous: public
  cooldown: {enabled: true, hours: 24}
`)
	e := loadEngine(t, dir, Options{SkipTests: true})
	ctx := context.Background()
	times := map[string]string{
		"v1.3.0": "2026-01-01T00:00:00Z",
		"v1.3.1": "2026-02-01T00:00:00Z", // deny-listed
		"v1.3.2": "2026-03-01T00:00:00Z",
		"v1.4.0": "2026-11-25T09:00:00Z", // an hour old: cooling down
	}
	all := []string{"v1.3.0", "v1.3.1", "v1.3.2", "v1.4.0", "v1.5.0"} // v1.5.0: time unknown
	timeOf := func(i int) string { return times[all[i]] }

	tests := []struct {
		name   string
		in     Input
		timeOf func(int) string
		want   []string
	}{
		{"ok/deny-list-and-cooldown", pull(member("a", "payments"), ActionList, RoutePublic, "github.com/example/leftpad", ""), timeOf, []string{"v1.3.0", "v1.3.2", "v1.5.0"}},
		{"ok/no-times", pull(member("a", "payments"), ActionList, RoutePublic, "github.com/example/leftpad", ""), nil, []string{"v1.3.0", "v1.3.2", "v1.4.0", "v1.5.0"}},
		{"ok/not-deny-listed", pull(member("a", "payments"), ActionLatest, RoutePublic, "github.com/example/other", ""), nil, all},
		{"ok/other-teams-module", pull(member("a", "web"), ActionList, RoutePrivate, "corp.example/payments/ledger", ""), nil, []string{}},
		{"ok/empty", pull(member("a", "web"), ActionList, RoutePublic, "github.com/example/leftpad", ""), nil, []string{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			versions := all
			if tt.name == "ok/empty" {
				versions = nil
			}
			for range 2 { // the second round is answered from the cache
				got, err := e.FilterVersions(ctx, tt.in, versions, tt.timeOf)
				if err != nil {
					t.Fatal(err)
				}
				if !slices.Equal(got, tt.want) {
					t.Errorf("FilterVersions = %q, want %q", got, tt.want)
				}
			}
		})
	}
}

func TestNewInput(t *testing.T) {
	t.Parallel()
	in := NewInput(&identity.Identity{Subject: "s", Teams: []string{"t"}, Method: identity.MethodMTLS, Scopes: []string{"pull"}}, ActionZip)
	if in.Subject != "s" || in.Teams[0] != "t" || in.Method != identity.MethodMTLS || in.Scopes[0] != "pull" || in.Action != ActionZip {
		t.Errorf("NewInput = %+v", in)
	}
	if anon := NewInput(nil, ActionList); anon.Method != identity.MethodAnonymous || anon.Subject != "" {
		t.Errorf("NewInput(nil) = %+v", anon)
	}
}

func TestPathPrefixes(t *testing.T) {
	t.Parallel()
	tests := map[string][]string{
		"":                  nil,
		"a.com":             {"a.com"},
		"a.com/b/c":         {"a.com", "a.com/b", "a.com/b/c"},
		"corp.example/x/v2": {"corp.example", "corp.example/x", "corp.example/x/v2"},
		// Folded: policy matches module paths case-insensitively.
		"github.com/Sirupsen/logrus": {"github.com", "github.com/sirupsen", "github.com/sirupsen/logrus"},
		"CORP.example/Ä/X":           {"corp.example", "corp.example/Ä", "corp.example/Ä/x"},
	}
	for in, want := range tests {
		if got := pathPrefixes(in); !slices.Equal(got, want) {
			t.Errorf("pathPrefixes(%q) = %q, want %q", in, got, want)
		}
	}
}

// metricValue returns the value of the counter or gauge in reg named name whose
// label values, in label-name order, are values.
func metricValue(t testing.TB, reg *prometheus.Registry, name string, values ...string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			var got []string
			for _, l := range m.GetLabel() {
				got = append(got, l.GetValue())
			}
			if slices.Equal(got, values) {
				return value(m)
			}
		}
	}
	t.Fatalf("no %s%q in the registry", name, values)
	return 0
}

func value(m *dto.Metric) float64 {
	switch {
	case m.GetCounter() != nil:
		return m.GetCounter().GetValue()
	case m.GetGauge() != nil:
		return m.GetGauge().GetValue()
	}
	return 0
}

func TestInputFieldsRead(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name, rego string
		want       inputField
	}{
		{"ok/fields", `package p
x if input.subject == "a"
y if input.teams[_] == data.d[input.module]`, fieldSubject | fieldTeams | fieldModule},
		{"ok/prefixes-is-module", `package p
x if input.path_prefixes[0]`, fieldModule},
		{"ok/whole-input", `package p
x := input`, fieldAll},
		{"ok/computed-key", `package p
x if { some k; input[k] }`, fieldAll},
		{"ok/none", `package p
x := 1`, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			m, err := ast.ParseModuleWithOpts("p.rego", tt.rego, ast.ParserOptions{RegoVersion: ast.RegoV1})
			if err != nil {
				t.Fatal(err)
			}
			if got := inputFieldsRead(map[string]*ast.Module{"p.rego": m}); got != tt.want {
				t.Errorf("inputFieldsRead = %b, want %b", got, tt.want)
			}
		})
	}
}

// TestCacheSharedAcrossVersionObjects: the shipped policy reads input.verb, not
// input.action, so a version's .info, .mod and .zip share one cached decision,
// and so does the filtering of a version list (decided as zip downloads).
func TestCacheSharedAcrossVersionObjects(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, defaultDir, Options{})
	ctx := context.Background()
	alice := member("alice", "payments")
	in := pull(alice, ActionList, RoutePrivate, "corp.example/payments/ledger", "")
	if got, err := e.FilterVersions(ctx, in, []string{"v1.0.0"}, nil); err != nil || len(got) != 1 {
		t.Fatalf("FilterVersions = %q, %v", got, err)
	}
	for _, a := range []Action{ActionInfo, ActionMod, ActionZip} {
		d, err := e.Decide(ctx, pull(alice, a, RoutePrivate, "corp.example/payments/ledger", "v1.0.0"))
		if err != nil || !d.Allow || !d.Cached {
			t.Errorf("%s: %+v, %v; want a cached allow", a, d, err)
		}
	}
	// list has no version: its own entry.
	if d, _ := e.Decide(ctx, in); d.Cached {
		t.Errorf("list answered from the cache of a version's decision")
	}
}

// TestDecisionCacheTime: a cached decision answers in later minutes when it
// cannot depend on input.time, and not when it can (the cool-down judging a
// public version whose publication time is known).
func TestDecisionCacheTime(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t, defaultDir)
	writeFile(t, dir, "settings.yaml", `
settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  cooldown: {enabled: true, hours: 72, exempt: [golang.org/x]}
`)
	e := loadEngine(t, dir, Options{SkipTests: true})
	alice := member("alice@corp.example", "payments")
	published := "2026-11-25T08:00:00Z" // 2 hours before testNow: inside the cool-down
	withTime := func(in Input) Input { in.VersionTime = published; return in }

	tests := []struct {
		name  string
		in    Input
		timed bool // the decision may depend on the time
	}{
		{"timed/public-version-in-cooldown", withTime(pull(alice, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1")), true},
		{"timeless/public-version-unknown-time", pull(alice, ActionZip, RoutePublic, "github.com/pkg/errors", "v0.9.1"), false},
		{"timeless/exempt-prefix", withTime(pull(alice, ActionZip, RoutePublic, "golang.org/x/mod", "v0.20.0")), false},
		{"timeless/private-module", withTime(pull(alice, ActionZip, RoutePrivate, "corp.example/payments/ledger", "v1.2.0")), false},
		{"timeless/list", pull(alice, ActionList, RoutePublic, "github.com/pkg/errors", ""), false},
		{"timeless/deny-listed", pull(alice, ActionZip, RoutePublic, "github.com/evil-typosquat/uuid", "v1.0.0"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ctx := context.Background()
			in := tt.in
			in.Time = testNow
			first, err := e.Decide(ctx, in)
			if err != nil || first.Cached {
				t.Fatalf("first Decide = %+v, %v; want an uncached decision", first, err)
			}
			if d, _ := e.Decide(ctx, in); !d.Cached {
				t.Fatalf("same minute: not cached")
			}
			in.Time = testNow.Add(time.Minute)
			d, err := e.Decide(ctx, in)
			if err != nil {
				t.Fatal(err)
			}
			if d.Cached == tt.timed {
				t.Errorf("next minute: Cached = %v, want %v", d.Cached, !tt.timed)
			}
			if d.Allow != first.Allow {
				t.Errorf("next minute: Allow = %v, want %v", d.Allow, first.Allow)
			}
		})
	}

	// The time-dependent decision changes when the cool-down ends: had it been
	// cached without the time, the deny would outlive it.
	in := withTime(pull(alice, ActionZip, RoutePublic, "github.com/gorilla/websocket", "v1.5.3"))
	in.Time = testNow
	if d, err := e.Decide(context.Background(), in); err != nil || d.Allow {
		t.Fatalf("inside the cool-down: %+v, %v; want a deny", d, err)
	}
	in.Time = testNow.Add(72 * time.Hour)
	if d, err := e.Decide(context.Background(), in); err != nil || !d.Allow || d.Cached {
		t.Errorf("after the cool-down: %+v, %v; want an evaluated allow", d, err)
	}
}

// TestTimeDependence: which policies make which decisions time-dependent.
func TestTimeDependence(t *testing.T) {
	t.Parallel()
	base := `package modgate.authz

default decision := {"allow": false, "reasons": ["no"]}

decision := {"allow": true, "reasons": []} if count(deny) == 0
`
	tests := []struct {
		name         string
		rules        string
		public, priv bool // whether a public / private pull depends on the time
	}{
		{"none/no-time", `deny contains "x" if input.module == "bad"`, false, false},
		{"guarded/route", `deny contains "late" if {
	input.route == "public"
	time.parse_rfc3339_ns(input.time) > 0
}`, true, false},
		{"always/unguarded", `deny contains "late" if time.parse_rfc3339_ns(input.time) < 0`, true, true},
		{"always/guard-reads-a-timed-rule", `late if time.parse_rfc3339_ns(input.time) < 0
deny contains "x" if {
	not late
	input.route == "public"
}`, true, true},
		{"always/whole-input", `deny contains "x" if {
	input.route == "public"
	x := input
	x.time == ""
}`, true, false},
		{"always/with", `deny contains "x" if {
	input.route == "public"
	time.parse_rfc3339_ns(input.time) < 0
}
deny contains "y" if {
	input.module == "m" with input.module as "m"
}`, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := t.TempDir()
			writeFile(t, dir, "p.rego", base+tt.rules+"\n")
			e := loadEngine(t, dir, Options{SkipTests: true})
			st := e.current.Load()
			for _, c := range []struct {
				route Route
				want  bool
			}{{RoutePublic, tt.public}, {RoutePrivate, tt.priv}} {
				in := pull(member("a", "t"), ActionZip, c.route, "m", "v1.0.0")
				_, got, err := st.evaluate(context.Background(), in.value(testNow, pathPrefixes(in.Module)))
				if err != nil {
					t.Fatal(err)
				}
				if got != c.want {
					t.Errorf("%s pull: depends on time = %v, want %v", c.route, got, c.want)
				}
			}
		})
	}
}

// TestDecideStopsWhenCancelled: a decision stops evaluating when its request's
// context ends (the client went away, the server shuts down). The engine hands
// OPA its own cancellation rather than OPA's goroutine per evaluation, and
// this is what that must still do. The policy below takes many seconds to
// decide; a cancelled decision must fail rather than finish.
func TestDecideStopsWhenCancelled(t *testing.T) {
	dir := t.TempDir()
	writeFile(t, dir, "authz.rego", `package modgate.authz
decision := {"allow": count(products) > 0, "reasons": ["slow"]}
products contains i * j if {
	some i in numbers.range(1, 4000)
	some j in numbers.range(1, 4000)
}
`)
	e := loadEngine(t, dir, Options{CacheSize: -1})
	in := pull(member("dev@corp.example", "payments"), ActionZip, RoutePublic, "github.com/pkg/errors", "v1.0.0")
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		time.Sleep(50 * time.Millisecond)
		cancel()
	}()
	d, err := e.Decide(ctx, in)
	if err == nil {
		t.Fatalf("Decide with a cancelled context = %+v, nil; want an error", d)
	}
	if !strings.Contains(err.Error(), "cancel") {
		t.Errorf("err = %v, want one saying the evaluation was cancelled", err)
	}
}
