package gate

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/route"
)

// ownerPolicy allows team payments to pull corp.example/payments, denies the
// rest of it as owned by payments, denies versions of public modules with a
// version time as too young, and counts its decisions.
type ownerPolicy struct {
	asked []policy.Input
	timed bool
}

func (p *ownerPolicy) Decide(_ context.Context, in policy.Input) (policy.Decision, error) {
	p.asked = append(p.asked, in)
	id := "d" + string(rune('0'+len(p.asked)))
	owned := strings.HasPrefix(in.Module, "corp.example/payments")
	switch {
	case owned && len(in.Teams) == 1 && in.Teams[0] == "payments":
		return policy.Decision{Allow: true, ID: id, Revision: "r"}, nil
	case in.VersionTime != "":
		return policy.Decision{Reasons: []string{"too young"}, ID: id, Revision: "r"}, nil
	case owned:
		return policy.Decision{Reasons: []string{"owned by team payments"}, ID: id, Revision: "r"}, nil
	case in.Version == "v1.1.0":
		return policy.Decision{Reasons: []string{"version is deny-listed"}, ID: id, Revision: "r"}, nil
	}
	return policy.Decision{Allow: true, ID: id, Revision: "r"}, nil
}

func (p *ownerPolicy) FilterVersions(ctx context.Context, in policy.Input, vs []string, _ func(int) string) ([]string, error) {
	var out []string
	for _, v := range vs {
		in.Version = v
		if d, _ := p.Decide(ctx, in); d.Allow {
			out = append(out, v)
		}
	}
	return out, nil
}

func (p *ownerPolicy) NeedsVersionTime() bool { return p.timed }

// fakeSources knows the modules in modules; every version has a time.
type fakeSources struct {
	modules map[string]bool
	exists  []string // the Exists calls, by module
}

func (f *fakeSources) Info(_ context.Context, _ route.Route, mod, _, version string) (goproxy.Info, error) {
	return goproxy.Info{Version: version, Time: time.Now()}, nil
}

func (f *fakeSources) Exists(_ context.Context, _ route.Route, mod, _ string) error {
	f.exists = append(f.exists, mod)
	if f.modules[mod] {
		return nil
	}
	return derrors.New(derrors.NotFound, "not found: %s", mod)
}

func newGate(timed bool) (*Gate, *ownerPolicy, *fakeSources) {
	pol := &ownerPolicy{timed: timed}
	src := &fakeSources{modules: map[string]bool{"corp.example/payments/ledger": true, "mod.test/hello": true}}
	return New(pol, route.New("corp.example", nil), src), pol, src
}

func caller(team string) *identity.Identity {
	return &identity.Identity{Subject: "dev", Teams: []string{team}, Method: identity.MethodToken}
}

func TestAuthorizeNoExistenceOracle(t *testing.T) {
	t.Parallel()
	for _, timed := range []bool{false, true} {
		g, _, src := newGate(timed)
		var first string
		for _, v := range []string{"v1.0.0", "v1.9.9", "main", "0123456789ab"} {
			req := Request{Identity: caller("risk"), Action: policy.ActionInfo, Module: "corp.example/payments/ledger", Version: v, Query: !strings.HasPrefix(v, "v1")}
			_, d, err := g.Authorize(context.Background(), req)
			if !errors.Is(err, derrors.PermissionDenied) || d.Allow {
				t.Fatalf("timed=%v %s: err=%v, want 403", timed, v, err)
			}
			if derrors.PublicMessage(err) != "owned by team payments" {
				t.Errorf("timed=%v %s: reason %q, want the ownership reason whatever the version", timed, v, derrors.PublicMessage(err))
			}
			if first == "" {
				first = derrors.PublicMessage(err)
			}
		}
		for _, m := range src.exists {
			if m != "corp.example/payments/ledger" {
				t.Errorf("existence asked of %q", m)
			}
		}
	}
}

func TestAuthorizeNotAModuleIs404(t *testing.T) {
	t.Parallel()
	g, _, _ := newGate(false)
	_, _, err := g.Authorize(context.Background(), Request{Identity: caller("risk"), Action: policy.ActionList, Module: "corp.example/payments/ledger/sub"})
	if !errors.Is(err, derrors.NotFound) {
		t.Errorf("denied probe of a path that is no module: %v, want 404", err)
	}
}

func TestAuthorizeLookupIsAPull(t *testing.T) {
	t.Parallel()
	g, pol, _ := newGate(false)
	_, _, err := g.Authorize(context.Background(), Request{Identity: caller("risk"), Action: policy.ActionSumDB, Module: "mod.test/hello", Version: "v1.1.0", Lookup: true})
	if !errors.Is(err, derrors.PermissionDenied) || derrors.PublicMessage(err) != "version is deny-listed" {
		t.Errorf("lookup of a denied version: %v", err)
	}
	if got := pol.asked[0].Action; got != policy.ActionInfo {
		t.Errorf("lookup decided as %q, want info", got)
	}
	n := len(pol.asked)
	_, _, err = g.Authorize(context.Background(), Request{Identity: caller("payments"), Action: policy.ActionSumDB, Module: "corp.example/payments/ledger", Version: "v1.0.0", Lookup: true})
	if !errors.Is(err, derrors.NotFound) || len(pol.asked) != n {
		t.Errorf("lookup of a private path: %v (policy asked %d times), want 404 without asking", err, len(pol.asked)-n)
	}
}

func TestAuthorizePublishRoute(t *testing.T) {
	t.Parallel()
	g, _, _ := newGate(false)
	for name, tt := range map[string]struct {
		req  Request
		want error
	}{
		"fail/anonymous":   {Request{Identity: &identity.Identity{Method: identity.MethodAnonymous}, Action: policy.ActionPublish, Module: "corp.example/payments/ledger", Version: "v1.2.0"}, derrors.Unauthenticated},
		"fail/public-path": {Request{Identity: caller("payments"), Action: policy.ActionPublish, Module: "mod.test/hello", Version: "v1.2.0"}, derrors.PermissionDenied},
		"ok/owner":         {Request{Identity: caller("payments"), Action: policy.ActionPublish, Module: "corp.example/payments/ledger", Version: "v1.2.0"}, nil},
	} {
		_, _, err := g.Authorize(context.Background(), tt.req)
		if (tt.want == nil) != (err == nil) || (tt.want != nil && !errors.Is(err, tt.want)) {
			t.Errorf("%s: %v, want %v", name, err, tt.want)
		}
	}
}

func TestLatestFallbackDecision(t *testing.T) {
	t.Parallel()
	g, _, _ := newGate(false)
	req := Request{Identity: caller("checkout"), Action: policy.ActionLatest, Module: "mod.test/hello"}
	v, d, err := g.Latest(context.Background(), req, route.Public, goproxy.Info{Version: "v1.1.0"}, func() ([]string, error) {
		return []string{"v1.0.0", "v1.1.0"}, nil
	})
	if err != nil || v != "v1.0.0" || !d.Allow || d.ID == "" {
		t.Errorf("Latest = %q %+v %v, want v1.0.0 with the decision that allowed it", v, d, err)
	}
}

type fakeFirstSeen struct {
	t     time.Time
	ok    bool
	asked []string
}

func (f *fakeFirstSeen) FirstSeen(_ context.Context, mod, version string) (time.Time, bool) {
	f.asked = append(f.asked, mod+"@"+version)
	return f.t, f.ok
}

func (f *fakeFirstSeen) Batch(ctx context.Context, mod string, versions []string) ([]time.Time, error) {
	times := make([]time.Time, len(versions))
	for i, v := range versions {
		times[i], _ = f.FirstSeen(ctx, mod, v)
	}
	return times, nil
}

// A version's age runs from the later of its .info Time and modgate's first
// sight of it, for public versions only.
func TestAgeIsLaterOfInfoAndFirstSight(t *testing.T) {
	ctx := context.Background()
	yearAgo := time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	seen := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	later := time.Date(2026, 6, 1, 0, 0, 0, 0, time.UTC)
	g, _, _ := newGate(true)
	pub, priv := g.Route("mod.test/hello"), g.Route("corp.example/payments/ledger")
	if got := g.age(ctx, pub, "mod.test/hello", "v1.0.0", yearAgo); got != "2025-01-01T00:00:00Z" {
		t.Errorf("no first-seen store: %s, want the .info Time", got)
	}
	fs := &fakeFirstSeen{t: seen, ok: true}
	g.SetFirstSeen(fs)
	for _, tt := range []struct {
		name string
		rt   route.Route
		mod  string
		info time.Time
		ok   bool
		want string
	}{
		{"backdated-info-uses-first-sight", pub, "mod.test/hello", yearAgo, true, "2026-01-01T00:00:00Z"},
		{"info-later-than-first-sight-kept", pub, "mod.test/hello", later, true, "2026-06-01T00:00:00Z"},
		{"first-sight-unknown-uses-info", pub, "mod.test/hello", yearAgo, false, "2025-01-01T00:00:00Z"},
		{"private-uses-info", priv, "corp.example/payments/ledger", yearAgo, true, "2025-01-01T00:00:00Z"},
	} {
		fs.ok = tt.ok
		if got := g.age(ctx, tt.rt, tt.mod, "v1.0.0", tt.info); got != tt.want {
			t.Errorf("%s: age = %s, want %s", tt.name, got, tt.want)
		}
	}
	for _, a := range fs.asked {
		if strings.HasPrefix(a, "corp.example/") {
			t.Errorf("first sight asked for private %s", a)
		}
	}
}
