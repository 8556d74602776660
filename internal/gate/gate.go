// Package gate is modgate's one authorization gate. Every protocol, checksum
// database, API and console request is decided here, once, before any source
// serves it: the gate asks the router where the module comes from, builds the
// policy's input, asks the policy and turns its answer into the request's
// outcome (allowed, 403 with the policy's reason, or 404 for a path that is no
// module at all). The decision it returns is the one the audit row records.
package gate

import (
	"context"
	"errors"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/route"
	"github.com/modgate/modgate/internal/source"
)

// Policy decides who may do what; *policy.Engine implements it.
type Policy interface {
	Decide(ctx context.Context, in policy.Input) (policy.Decision, error)
	FilterVersions(ctx context.Context, in policy.Input, versions []string, timeOf func(i int) string) ([]string, error)
	NeedsVersionTime() bool
}

// AllowAll stands in when no policy directory is configured: every
// authenticated caller may do everything.
type AllowAll struct{}

func (AllowAll) Decide(context.Context, policy.Input) (policy.Decision, error) {
	return policy.Decision{Allow: true, Revision: "none"}, nil
}
func (AllowAll) FilterVersions(_ context.Context, _ policy.Input, v []string, _ func(int) string) ([]string, error) {
	return v, nil
}
func (AllowAll) NeedsVersionTime() bool { return false }

// Sources is what the gate reads from the module sources: a version's time (for
// the cool-down) and whether a module exists at all (internal/source).
type Sources interface {
	Info(ctx context.Context, rt route.Route, modulePath, escModule, version string) (goproxy.Info, error)
	Exists(ctx context.Context, rt route.Route, modulePath, escModule string) error
}

// FirstSeen answers when modgate first saw a public version from upstream
// (internal/firstseen), recording now if it never has: FirstSeen for one
// version (ok false when it cannot tell), Batch for a whole list at the cost of
// one database statement (times[i] is versions[i]'s, zero where it cannot tell).
type FirstSeen interface {
	FirstSeen(ctx context.Context, module, version string) (t time.Time, ok bool)
	Batch(ctx context.Context, module string, versions []string) (times []time.Time, err error)
}

// Gate decides requests. Safe for concurrent use.
type Gate struct {
	policy Policy
	router *route.Router
	src    Sources
	seen   FirstSeen
}

// SetFirstSeen makes the version time of public versions the later of the
// upstream's .info Time and modgate's first sight of the version. Call before
// the gate is used.
func (g *Gate) SetFirstSeen(s FirstSeen) { g.seen = s }

// New returns a gate. pol nil allows everything; src may be nil (no version
// times, no existence check).
func New(pol Policy, router *route.Router, src Sources) *Gate {
	if pol == nil {
		pol = AllowAll{}
	}
	return &Gate{policy: pol, router: router, src: src}
}

// Request is one request to decide.
type Request struct {
	Identity   *identity.Identity
	ClientAddr string
	Action     policy.Action
	// Module names the module for protocol requests, checksum database lookups,
	// publish and delete; EscapedModule is its case-encoded form.
	Module, EscapedModule string
	// Version is the canonical version or query of info/mod/zip requests,
	// lookups, publish and delete; empty for list and latest.
	Version string
	// Query: Version is a query (a branch, commit prefix, version prefix), not
	// a canonical version.
	Query bool
	// Lookup: a checksum database lookup of Module@Version. The gate decides it
	// like a pull of that module: what a caller may not pull it may not look up
	// either.
	Lookup bool
}

// Route returns modulePath's route.
func (g *Gate) Route(modulePath string) route.Route { return g.router.Of(modulePath) }

// PolicyRoute is the route as the policy's input names it.
func PolicyRoute(rt route.Route) policy.Route {
	if rt.Private() {
		return policy.RoutePrivate
	}
	return policy.RoutePublic
}

// Authorize decides req. It returns the module's route and the policy's
// decision (the one the audit row records), and an error when the request must
// not proceed: derrors.PermissionDenied with the policy's reason (403: the go
// command prints it and does not try the next proxy, where a 404 would leak the
// path to it), derrors.NotFound for a path no source knows as a module, or the
// route's own refusal (a private path in a checksum database lookup, a publish
// of a public path).
//
// No existence oracle: a caller who may not pull a module gets the same 403 for
// every version and query of it, existing or not. The 404 depends only on
// whether the module path is a module at all, so `go get`, which probes @v/list
// of every prefix of a package path, still works under a denied path.
func (g *Gate) Authorize(ctx context.Context, req Request) (route.Route, policy.Decision, error) {
	var rt route.Route
	if req.Module != "" {
		rt = g.router.Of(req.Module)
	}
	action := req.Action
	switch {
	case req.Lookup:
		if rt.Private() {
			// The lookup would tell the checksum database the private path.
			return rt, policy.Decision{}, derrors.New(derrors.NotFound, "not found: %s is a private module path; private modules are not in the checksum database (set GONOSUMDB)", req.Module)
		}
		action = policy.ActionInfo
	case req.Action == policy.ActionPublish || req.Action == policy.ActionDelete:
		if req.Identity == nil || req.Identity.Method == identity.MethodAnonymous {
			return rt, policy.Decision{}, derrors.New(derrors.Unauthenticated, "%s requires an authenticated caller", req.Action)
		}
		if !rt.Private() {
			return rt, policy.Decision{}, derrors.New(derrors.PermissionDenied, "%s is not a private module path (private.patterns): only private modules are published to modgate", req.Module)
		}
	}
	in := g.input(req, action, rt)
	timed := false
	if (action == policy.ActionInfo || action == policy.ActionMod || action == policy.ActionZip) &&
		!req.Lookup && !req.Query && req.Version != "" && g.src != nil && g.policy.NeedsVersionTime() {
		in.VersionTime = g.versionTime(ctx, rt, req.Module, req.EscapedModule, req.Version)
		timed = in.VersionTime != ""
	}
	d, err := g.policy.Decide(ctx, in)
	if err != nil {
		return rt, d, err
	}
	if d.Allow {
		return rt, d, nil
	}
	if timed {
		// Denied knowing when the version was published. If the caller may not
		// pull the module at all, answer with the reason that does not depend
		// on the version existing (a cool-down reason would reveal that it
		// does).
		in.VersionTime = ""
		if d2, err := g.policy.Decide(ctx, in); err == nil && !d2.Allow {
			d = d2
		}
	}
	if req.Module != "" && action.IsPull() && g.src != nil {
		if err := g.src.Exists(ctx, rt, req.Module, req.EscapedModule); err != nil {
			return rt, d, err
		}
	}
	return rt, d, d.Err()
}

func (g *Gate) input(req Request, action policy.Action, rt route.Route) policy.Input {
	in := policy.NewInput(req.Identity, action)
	in.Module, in.Version = req.Module, req.Version
	if action == policy.ActionList || action == policy.ActionLatest {
		in.Version = ""
	}
	if req.Module != "" {
		in.Route = PolicyRoute(rt)
	}
	in.ClientAddr = req.ClientAddr
	return in
}

// versionTime returns the publication time of a canonical version, or "" when
// it cannot be had.
func (g *Gate) versionTime(ctx context.Context, rt route.Route, mod, escMod, version string) string {
	info, err := g.src.Info(ctx, rt, mod, escMod, version)
	if err != nil || info.Time.IsZero() {
		return ""
	}
	return g.age(ctx, rt, mod, version, info.Time)
}

// age returns the time a version's age is measured from: for a public version
// the later of the upstream's .info Time and modgate's first sight of it (an
// author can backdate the .info Time of a VCS-backed version, not modgate's
// first sight; a version whose .info Time is newer than the first sight is not
// older than it claims). Without a first-sight time (no database, or it is
// unreachable) the .info Time alone.
func (g *Gate) age(ctx context.Context, rt route.Route, mod, version string, infoTime time.Time) string {
	t := infoTime
	if g.seen != nil && !rt.Private() {
		if seen, ok := g.seen.FirstSeen(ctx, mod, version); ok && seen.After(t) {
			t = seen
		}
	}
	return t.UTC().Format(time.RFC3339)
}

// FilterVersions returns the versions the caller of an allowed list request may
// pull, so `go get m@latest` picks an allowed version instead of failing on a
// denied one.
//
// With the cool-down on, the age of a public version in a list counts from
// modgate's first sight of it alone, all of the list's first sights recorded and
// read in one database statement: no .info is read per listed version (a list
// may have hundreds of thousands). A version first seen now is young whatever
// its .info Time, since an honest .info Time is never later than the first
// sight; so the list's decision agrees with the download's, which counts from
// the later of the two, except for a version whose .info Time is dated after
// its first sight (see docs/policy.md). While the database cannot be reached,
// a version whose first sight is not in memory is held out of the list, as if
// first seen now: the list stays bounded and never shows what a download would
// refuse. Private versions (no first sight; a git or published source) keep
// their .info Time, read per version.
func (g *Gate) FilterVersions(ctx context.Context, req Request, rt route.Route, versions []string) ([]string, error) {
	in := g.input(req, policy.ActionList, rt)
	if g.src == nil || !g.policy.NeedsVersionTime() {
		return g.policy.FilterVersions(ctx, in, versions, nil)
	}
	if g.seen == nil || rt.Private() {
		return g.policy.FilterVersions(ctx, in, versions, func(i int) string {
			return g.versionTime(ctx, rt, req.Module, req.EscapedModule, versions[i])
		})
	}
	// Refuse an oversized list before recording anything of it.
	if err := policy.CheckListLength(req.Module, len(versions)); err != nil {
		return nil, err
	}
	// The error (the database is unreachable) is logged by the store; the
	// versions it could not tell are zero, held below.
	times, _ := g.seen.Batch(ctx, req.Module, versions)
	now := time.Now().UTC().Format(time.RFC3339)
	// A long list shares few first-sight times (one statement records a
	// list's new versions at one time), so each second is formatted once, up
	// to a bound.
	formatted := make(map[int64]string)
	return g.policy.FilterVersions(ctx, in, versions, func(i int) string {
		t := times[i]
		if t.IsZero() {
			return now
		}
		s, ok := formatted[t.Unix()]
		if !ok {
			s = t.UTC().Format(time.RFC3339)
			if len(formatted) < 4096 {
				formatted[t.Unix()] = s
			}
		}
		return s
	})
}

// Latest decides which version an allowed @latest request answers: the source's
// latest when the caller may pull it, else the newest version the caller may
// pull (releases before pre-releases, as the go command prefers them). The
// decision returned is the one that allowed the version served, or the denial
// when there is none; it replaces the @latest request's own in the audit row.
func (g *Gate) Latest(ctx context.Context, req Request, rt route.Route, latest goproxy.Info, versions func() ([]string, error)) (string, policy.Decision, error) {
	pull := req
	pull.Action, pull.Version, pull.Query = policy.ActionZip, latest.Version, false
	in := g.input(pull, policy.ActionZip, rt)
	if g.policy.NeedsVersionTime() && !latest.Time.IsZero() {
		in.VersionTime = g.age(ctx, rt, req.Module, latest.Version, latest.Time)
	}
	d, err := g.policy.Decide(ctx, in)
	if err != nil || d.Allow {
		return latest.Version, d, err
	}
	all, err := versions()
	if err != nil {
		return "", d, err
	}
	allowed, err := g.FilterVersions(ctx, req, rt, all)
	if err != nil {
		return "", d, err
	}
	best := source.Newest(allowed)
	if best == "" {
		return "", d, d.Err()
	}
	pull.Version = best
	in = g.input(pull, policy.ActionZip, rt)
	if g.src != nil && g.policy.NeedsVersionTime() {
		in.VersionTime = g.versionTime(ctx, rt, req.Module, req.EscapedModule, best)
	}
	d2, err := g.policy.Decide(ctx, in)
	if err != nil {
		return "", d, err
	}
	if !d2.Allow {
		return "", d2, d2.Err()
	}
	return best, d2, nil
}

// Decide answers a question the console asks (its pages and the what-if form)
// through the same router as every request: the route is the router's, never
// the caller's.
func (g *Gate) Decide(ctx context.Context, in policy.Input) (policy.Decision, error) {
	if in.Module != "" {
		in.Route = PolicyRoute(g.router.Of(in.Module))
	}
	return g.policy.Decide(ctx, in)
}

// NeedsVersionTime reports whether the policy reads version times.
func (g *Gate) NeedsVersionTime() bool { return g.policy.NeedsVersionTime() }

// IsDenied reports whether err is a policy denial.
func IsDenied(err error) bool { return errors.Is(err, derrors.PermissionDenied) }
