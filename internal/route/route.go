// Package route decides where a module path is served from: the public mirror
// chain, the company's git (private.routes), or only the versions published into
// modgate (a private path no git route serves). It is the one answer to "is this
// module private?": the server, the authorization gate, the console's what-if and
// the policy input all ask it, so they cannot disagree.
package route

import "golang.org/x/mod/module"

// Route is where a module path is served from.
type Route uint8

const (
	// Public modules come from the upstream mirror chain, verified against the
	// checksum database.
	Public Route = iota
	// Git modules are private and served from a git route, together with any
	// versions published into modgate.
	Git
	// Published modules are private, but no git route serves them: only versions
	// published into modgate exist.
	Published
)

// Private reports whether the route is one of the private ones. A private path
// is never asked of a public mirror or the checksum database: the request alone
// would leak the company's module names.
func (r Route) Private() bool { return r != Public }

func (r Route) String() string {
	switch r {
	case Git:
		return "git"
	case Published:
		return "published"
	}
	return "public"
}

// Router maps module paths to routes. The zero Router routes everything public.
type Router struct {
	private string // private.patterns plus every git route's pattern (GOPRIVATE syntax)
	git     func(modulePath string) bool
}

// New returns a Router. privatePatterns is the GOPRIVATE-style list of private
// paths (private.patterns and the git routes' patterns); servedByGit reports
// whether a git route serves a path, nil when none is configured.
func New(privatePatterns string, servedByGit func(modulePath string) bool) *Router {
	return &Router{private: privatePatterns, git: servedByGit}
}

// Of returns modulePath's route.
func (r *Router) Of(modulePath string) Route {
	if r == nil || r.private == "" || !module.MatchPrefixPatterns(r.private, modulePath) {
		return Public
	}
	if r.git != nil && r.git(modulePath) {
		return Git
	}
	return Published
}

// Patterns returns the private patterns, GOPRIVATE syntax.
func (r *Router) Patterns() string {
	if r == nil {
		return ""
	}
	return r.private
}
