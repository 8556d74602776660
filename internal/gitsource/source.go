// Package gitsource serves private Go modules straight from the company's git
// servers, answering the GOPROXY protocol's questions (list, info, mod, zip,
// latest, version queries) the way `go mod download` with GOPROXY=direct would:
// the same versions, the same pseudo-versions, byte-identical go.mod files and
// module zips with the same hashes.
//
// Each repository is kept as a bare mirror on local disk, fetched with the git
// binary (the tool the go command itself uses) and refreshed when it is older
// than a short TTL or when a revision is asked for that it does not have. The
// version rules are those of the go command's cmd/go/internal/modfetch
// (coderepo.go, codehost/git.go), rewritten here on golang.org/x/mod.
package gitsource

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/derrors"
)

// Route maps module paths to repositories.
type Route struct {
	// Pattern is a GOPRIVATE-style glob list ("corp.example/*").
	Pattern string
	// Repo is the repository URL template. {root} is the repository's root module
	// path (corp.example/team/app), {path} the same without its first element
	// (team/app), {host} that first element.
	Repo string
	// RootDepth is how many path elements the repository root has
	// (corp.example/team/app: 3). 0 means 3.
	RootDepth int
	Auth      Auth
}

// Auth is how modgate authenticates to a git server.
type Auth struct {
	// Username and Password are sent as HTTP Basic credentials (a token usually
	// goes in Password). Empty Password: no HTTP credentials.
	Username, Password string
	// SSHKeyFile and KnownHostsFile authenticate over ssh://; the host key must be
	// in KnownHostsFile.
	SSHKeyFile, KnownHostsFile string
}

// DefaultRootDepth is the repository root depth of host/group/repo layouts.
const DefaultRootDepth = 3

// Options configure a Source.
type Options struct {
	// Dir holds one bare mirror per repository.
	Dir string
	// Refresh is how old a mirror may be when a list, @latest or a query (branch,
	// commit) is answered. Canonical versions already in the mirror need no fetch.
	Refresh time.Duration
	// Timeout bounds each git command.
	Timeout time.Duration
	Routes  []Route
	Logger  *slog.Logger
	// OnFetch, if set, is told about every git fetch, for metrics.
	OnFetch func(elapsed time.Duration, err error)
}

// Source serves modules from the routed repositories. Safe for concurrent use.
type Source struct {
	opts    Options
	log     *slog.Logger
	fetches atomic.Int64

	mu      sync.Mutex
	mirrors map[string]*mirror
}

// New returns a Source. It removes temporary archives a crash may have left in
// Dir and touches neither the mirrors nor the network until asked.
func New(opts Options) (*Source, error) {
	if opts.Dir == "" {
		return nil, fmt.Errorf("gitsource: no mirror directory")
	}
	// git runs in the mirror directories: a relative path (cache.dir: tmp/cache)
	// would be resolved against each of them.
	abs, err := filepath.Abs(opts.Dir)
	if err != nil {
		return nil, fmt.Errorf("gitsource: %w", err)
	}
	opts.Dir = abs
	if opts.Timeout <= 0 {
		opts.Timeout = 5 * time.Minute
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	for i, r := range opts.Routes {
		if err := r.validate(); err != nil {
			return nil, fmt.Errorf("gitsource: route %d: %w", i+1, err)
		}
	}
	if len(opts.Routes) > 0 {
		// Fail at start-up, not at the first private request.
		if _, err := exec.LookPath("git"); err != nil {
			return nil, fmt.Errorf("gitsource: private.routes need the git command: %w", err)
		}
	}
	leftovers, _ := filepath.Glob(filepath.Join(opts.Dir, archivePattern))
	for _, f := range leftovers {
		os.Remove(f)
	}
	return &Source{opts: opts, log: opts.Logger, mirrors: make(map[string]*mirror)}, nil
}

func (r Route) validate() error {
	if r.Pattern == "" {
		return fmt.Errorf("pattern must be set")
	}
	if r.RootDepth < 0 {
		return fmt.Errorf("root_depth must not be negative")
	}
	if !strings.Contains(r.Repo, "{") {
		return fmt.Errorf("repo %q has no {root}, {path} or {host} placeholder", r.Repo)
	}
	u, err := url.Parse(strings.NewReplacer("{root}", "x", "{path}", "x", "{host}", "x").Replace(r.Repo))
	if err != nil {
		return fmt.Errorf("repo: %v", err)
	}
	switch u.Scheme {
	case "https", "http", "ssh":
	default:
		return fmt.Errorf("repo %q: scheme must be https, http or ssh", r.Repo)
	}
	if u.User != nil {
		if _, hasPassword := u.User.Password(); hasPassword {
			return fmt.Errorf("repo %q: put the password in credentials, not in the URL", r.Repo)
		}
	}
	return nil
}

// Patterns returns the union of the routes' patterns, GOPRIVATE syntax.
func (s *Source) Patterns() string {
	var ps []string
	for _, r := range s.opts.Routes {
		ps = append(ps, r.Pattern)
	}
	return strings.Join(ps, ",")
}

// Serves reports whether a route matches modulePath.
func (s *Source) Serves(modulePath string) bool {
	_, ok := s.route(modulePath)
	return ok
}

// Fetches returns how many git fetches the source has run.
func (s *Source) Fetches() int64 { return s.fetches.Load() }

func (s *Source) route(modulePath string) (Route, bool) {
	for _, r := range s.opts.Routes {
		if module.MatchPrefixPatterns(r.Pattern, modulePath) {
			return r, true
		}
	}
	return Route{}, false
}

// Module returns the module at modulePath. Errors are derrors.NotFound when no
// route serves the path or the path is too short for the route's root depth.
func (s *Source) Module(modulePath string) (*Module, error) {
	r, ok := s.route(modulePath)
	if !ok {
		return nil, derrors.New(derrors.NotFound, "not found: no private source serves %s", modulePath)
	}
	prefix, _, ok := module.SplitPathVersion(modulePath)
	if !ok {
		return nil, derrors.New(derrors.InvalidArgument, "invalid module path %q", modulePath)
	}
	depth := r.RootDepth
	if depth == 0 {
		depth = DefaultRootDepth
	}
	elems := strings.Split(prefix, "/")
	if len(elems) < depth {
		return nil, derrors.New(derrors.NotFound, "not found: %s is not inside a repository (repositories here are %d path elements deep)", modulePath, depth)
	}
	root := strings.Join(elems[:depth], "/")
	repoURL := strings.NewReplacer(
		"{root}", root,
		"{path}", strings.Join(elems[1:depth], "/"),
		"{host}", elems[0],
	).Replace(r.Repo)
	return newModule(s.mirror(repoURL, r.Auth), root, modulePath, s.opts.Refresh)
}

// mirror returns the mirror for repoURL, creating its bookkeeping on first use.
func (s *Source) mirror(repoURL string, auth Auth) *mirror {
	s.mu.Lock()
	defer s.mu.Unlock()
	if m, ok := s.mirrors[repoURL]; ok {
		return m
	}
	sum := sha256.Sum256([]byte(repoURL))
	m := &mirror{
		dir:     filepath.Join(s.opts.Dir, hex.EncodeToString(sum[:16])+".git"),
		url:     repoURL,
		authEnv: authEnv(repoURL, auth),
		timeout: s.opts.Timeout,
		log:     s.log,
		fetches: func() { s.fetches.Add(1) },
		onFetch: s.opts.OnFetch,
	}
	s.mirrors[repoURL] = m
	return m
}

// authEnv passes credentials to git through the environment, never the command
// line or the mirror's config (both readable by others): HTTP credentials as a
// preemptive Authorization header scoped to the repository's origin, SSH keys
// through GIT_SSH_COMMAND.
func authEnv(repoURL string, a Auth) []string {
	var env []string
	u, err := url.Parse(repoURL)
	if err != nil {
		return nil
	}
	if (u.Scheme == "https" || u.Scheme == "http") && a.Password != "" {
		origin := u.Scheme + "://" + u.Host + "/"
		cred := base64.StdEncoding.EncodeToString([]byte(a.Username + ":" + a.Password))
		env = append(env,
			"GIT_CONFIG_COUNT=1",
			"GIT_CONFIG_KEY_0=http."+origin+".extraHeader",
			"GIT_CONFIG_VALUE_0=Authorization: Basic "+cred,
		)
	}
	if u.Scheme == "ssh" && a.SSHKeyFile != "" {
		ssh := []string{"ssh", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-i", shellQuote(a.SSHKeyFile)}
		if a.KnownHostsFile != "" {
			ssh = append(ssh, "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+shellQuote(a.KnownHostsFile))
		}
		env = append(env, "GIT_SSH_COMMAND="+strings.Join(ssh, " "))
	}
	return env
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }

// Info is what .info and @latest report.
type Info struct {
	Version string
	Time    time.Time
}
