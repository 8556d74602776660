package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/derrors"
)

// mirror is a bare copy of one remote repository on local disk. Every read is a
// local git command; only fetch talks to the remote. Fetches of one mirror are
// merged: callers arriving while one runs wait for it instead of starting another.
type mirror struct {
	dir     string
	url     string   // the remote, without credentials
	authEnv []string // environment carrying credentials, for fetch only
	timeout time.Duration
	log     *slog.Logger
	fetches func() // counts fetches, for tests; may be nil
	onFetch func(time.Duration, error)

	mu        sync.Mutex
	inited    bool
	lastFetch time.Time // last successful fetch; zero before the first
	flight    *fetchCall
	// refsCache holds the refs as last listed; only fetches change them, and
	// each fetch bumps generation so a listing that raced a fetch is not kept.
	refsCache  map[string]string
	generation int
}

type fetchCall struct {
	done chan struct{}
	err  error
}

// errUnknownRevision says that a revision is in no ref and no local object.
var errUnknownRevision = errors.New("unknown revision")

// refresh makes sure the mirror is no older than maxAge, fetching if it is. A
// mirror fetched before keeps serving when a refresh fails (the failure is
// logged): a git outage must not break builds that only need known versions.
func (m *mirror) refresh(ctx context.Context, maxAge time.Duration) error {
	m.mu.Lock()
	fetched := !m.lastFetch.IsZero()
	fresh := fetched && time.Since(m.lastFetch) <= maxAge
	m.mu.Unlock()
	if fresh {
		return nil
	}
	err := m.fetch(ctx)
	if err != nil && fetched {
		m.log.WarnContext(ctx, "gitsource: refresh failed; serving the mirror as last fetched", "repo", m.url, "err", err)
		return nil
	}
	return err
}

// fetch brings every branch, tag and HEAD of the remote into the mirror, joining
// a fetch already in flight.
func (m *mirror) fetch(ctx context.Context) error {
	m.mu.Lock()
	c := m.flight
	if c == nil {
		c = &fetchCall{done: make(chan struct{})}
		m.flight = c
		// The fetch runs detached from the caller: others may be waiting for it,
		// and an interrupted fetch would only have to be redone.
		go func() {
			c.err = m.doFetch(context.WithoutCancel(ctx))
			m.mu.Lock()
			m.flight = nil
			m.refsCache = nil
			m.generation++
			if c.err == nil {
				m.lastFetch = time.Now()
			}
			m.mu.Unlock()
			close(c.done)
		}()
	}
	m.mu.Unlock()
	select {
	case <-c.done:
		return c.err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fetchedWithin reports whether a fetch succeeded less than d ago.
func (m *mirror) fetchedWithin(d time.Duration) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return !m.lastFetch.IsZero() && time.Since(m.lastFetch) < d
}

func (m *mirror) doFetch(ctx context.Context) error {
	if err := m.init(ctx); err != nil {
		return err
	}
	if m.fetches != nil {
		m.fetches()
	}
	start := time.Now()
	// HEAD is fetched into a ref of its own: it names the default branch, whose
	// head is what the go command calls "latest" for a repository without tags.
	refspecs := []string{"+HEAD:refs/modgate/HEAD", "+refs/heads/*:refs/heads/*", "+refs/tags/*:refs/tags/*"}
	args := []string{"-c", "protocol.version=2", "fetch", "--quiet", "--prune", "--no-tags", "--no-write-fetch-head", "--end-of-options", m.url}
	_, err := m.git(ctx, true, append(args, refspecs...)...)
	var ge *gitError
	if errors.As(err, &ge) && strings.Contains(ge.stderr, "couldn't find remote ref HEAD") {
		// A remote whose HEAD names a branch that does not exist (only tags were
		// pushed, or the default branch was renamed): its tags still serve.
		m.log.Debug("gitsource: remote HEAD is dangling; fetching branches and tags only", "repo", m.url)
		if _, err = m.git(ctx, true, append(args, refspecs[1:]...)...); err == nil {
			_, err = m.git(ctx, false, "update-ref", "-d", "refs/modgate/HEAD")
		}
	}
	if err != nil {
		err = classify(err)
	}
	if m.onFetch != nil {
		m.onFetch(time.Since(start), err)
	}
	if err != nil {
		return err
	}
	m.log.Debug("gitsource: fetched", "repo", m.url, "elapsed", time.Since(start))
	return nil
}

// init creates the bare repository on first use.
func (m *mirror) init(ctx context.Context) error {
	m.mu.Lock()
	inited := m.inited
	m.mu.Unlock()
	if inited {
		return nil
	}
	if _, err := os.Stat(filepath.Join(m.dir, "HEAD")); err != nil {
		if err := os.MkdirAll(m.dir, 0o700); err != nil {
			return fmt.Errorf("gitsource: creating mirror: %w", err)
		}
		if _, err := m.git(ctx, false, "init", "--quiet", "--bare"); err != nil {
			return fmt.Errorf("gitsource: git init: %w", err)
		}
	}
	// As the go command does before `git archive`: export-subst and export-ignore
	// attributes in the repository must not change the module zip, or its hash
	// would differ from what `go mod download` computes.
	const attr = "* -export-subst -export-ignore\n"
	if err := os.MkdirAll(filepath.Join(m.dir, "info"), 0o700); err != nil {
		return fmt.Errorf("gitsource: %w", err)
	}
	if err := os.WriteFile(filepath.Join(m.dir, "info", "attributes"), []byte(attr), 0o600); err != nil {
		return fmt.Errorf("gitsource: %w", err)
	}
	m.mu.Lock()
	m.inited = true
	m.mu.Unlock()
	return nil
}

// gitError is a failed git command. Its text is for the log only: it may name
// the internal repository URL.
type gitError struct {
	args   []string
	err    error
	stderr string
}

func (e *gitError) Error() string {
	return fmt.Sprintf("git %s: %v: %s", strings.Join(e.args, " "), e.err, strings.TrimSpace(e.stderr))
}

func (e *gitError) Unwrap() error { return e.err }

// git runs a git command in the mirror. withAuth adds the credentials; only
// commands that talk to the remote get them.
func (m *mirror) git(ctx context.Context, withAuth bool, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = m.dir
	cmd.Env = gitEnv(m.dir)
	if withAuth {
		cmd.Env = append(cmd.Env, m.authEnv...)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			err = fmt.Errorf("%w (%v)", ctx.Err(), err)
		}
		return nil, &gitError{args: args, err: err, stderr: stderr.String()}
	}
	return stdout.Bytes(), nil
}

// gitEnv is the environment of every git command: the process's own (so an
// operator's proxy and CA settings apply) minus anything that could prompt or
// inject configuration, in the C locale so errors can be classified.
func gitEnv(dir string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case k == "GIT_ASKPASS", k == "SSH_ASKPASS", k == "GIT_SSH_COMMAND", k == "GIT_SSH",
			k == "GIT_DIR", k == "GIT_WORK_TREE", k == "LC_ALL", k == "LANG", k == "LANGUAGE",
			strings.HasPrefix(k, "GIT_CONFIG_"), k == "GIT_TRACE", strings.HasPrefix(k, "GIT_TRACE_"):
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"GIT_DIR="+dir,
		"GIT_TERMINAL_PROMPT=0",
		"GCM_INTERACTIVE=never",
		// Only network transports: no file://, no ext:: commands.
		"GIT_ALLOW_PROTOCOL=http:https:ssh",
		"LC_ALL=C",
	)
}

// classify turns a failed fetch into an error a developer can act on. The public
// message never contains the repository URL or credentials; the cause keeps the
// git output for the log.
func classify(err error) error {
	var ge *gitError
	if !errors.As(err, &ge) {
		return derrors.WithCause(derrors.BadUpstream, err, "private git source failed")
	}
	s := ge.stderr
	has := func(subs ...string) bool {
		for _, sub := range subs {
			if strings.Contains(s, sub) {
				return true
			}
		}
		return false
	}
	switch {
	case errors.Is(ge.err, context.DeadlineExceeded):
		return derrors.WithCause(derrors.UpstreamTimeout, err, "private git source timed out")
	case has("could not read Username", "could not read Password", "Authentication failed",
		"returned error: 401", "returned error: 403", "Permission denied (publickey", "Permission denied, please try again",
		"HTTP Basic: Access denied"):
		return derrors.WithCause(derrors.BadUpstream, err, "private git source rejected modgate's credentials")
	case has("Host key verification failed", "REMOTE HOST IDENTIFICATION HAS CHANGED"):
		return derrors.WithCause(derrors.BadUpstream, err, "private git source's SSH host key is not the one in known_hosts")
	case has("not found", "does not appear to be a git repository", "returned error: 404", "couldn't find remote ref HEAD"):
		return derrors.WithCause(derrors.NotFound, err, "repository not found")
	case has("Could not resolve host", "Failed to connect", "Connection refused", "Connection timed out",
		"Connection reset", "Could not read from remote repository", "unable to access", "Operation timed out",
		"returned error: 5", "Network is unreachable", "No route to host"):
		return derrors.WithCause(derrors.BadUpstream, err, "private git source unreachable")
	}
	return derrors.WithCause(derrors.BadUpstream, err, "private git source failed")
}

// revInfo describes one commit.
type revInfo struct {
	Name  string    // full commit hash
	Short string    // 12-hex-digit prefix, as pseudo-versions use
	Time  time.Time // commit time, UTC, as the go command reports it
	Tags  []string  // tags pointing at the commit
}

// refs returns every branch and tag ("refs/heads/x", "refs/tags/v1.0.0") and
// "HEAD", each mapped to the commit it names (annotated tags peeled). The map is
// shared: callers must not modify it.
func (m *mirror) refs(ctx context.Context) (map[string]string, error) {
	m.mu.Lock()
	cached, gen := m.refsCache, m.generation
	m.mu.Unlock()
	if cached != nil {
		return cached, nil
	}
	refs, err := m.listRefs(ctx)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.generation == gen && m.flight == nil {
		m.refsCache = refs
	}
	m.mu.Unlock()
	return refs, nil
}

func (m *mirror) listRefs(ctx context.Context) (map[string]string, error) {
	out, err := m.git(ctx, false, "for-each-ref", "--format=%(refname) %(objectname) %(*objectname)", "refs/heads/", "refs/tags/", "refs/modgate/HEAD")
	if err != nil {
		return nil, fmt.Errorf("gitsource: listing refs: %w", err)
	}
	refs := make(map[string]string)
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		hash := f[1]
		if len(f) == 3 {
			hash = f[2] // the commit an annotated tag points to
		}
		name := f[0]
		if name == "refs/modgate/HEAD" {
			name = "HEAD"
		}
		refs[name] = hash
	}
	return refs, nil
}

// tags returns the tags starting with prefix, sorted by name.
func tagsWithPrefix(refs map[string]string, prefix string) []string {
	var tags []string
	for ref := range refs {
		if tag, ok := strings.CutPrefix(ref, "refs/tags/"); ok && strings.HasPrefix(tag, prefix) {
			tags = append(tags, tag)
		}
	}
	slices.Sort(tags)
	return tags
}

const minHashDigits = 7

func allHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}

func isHashPrefix(rev string) bool {
	return len(rev) >= minHashDigits && len(rev) <= 40 && allHex(rev)
}

// stat resolves rev — a tag, a branch, HEAD or a (prefix of a) commit hash — in
// the mirror, in the go command's order (codehost/git.go): tags before branches.
func (m *mirror) stat(ctx context.Context, rev string) (*revInfo, error) {
	refs, err := m.refs(ctx)
	if err != nil {
		return nil, err
	}
	if isHashPrefix(rev) {
		if info, err := m.statLocal(ctx, rev, refs); err == nil {
			return info, nil
		}
	}
	var hash string
	switch {
	case refs["refs/tags/"+rev] != "":
		hash = refs["refs/tags/"+rev]
	case refs["refs/heads/"+rev] != "":
		hash = refs["refs/heads/"+rev]
	case rev == "HEAD" && refs["HEAD"] != "":
		hash = refs["HEAD"]
	default:
		return nil, errUnknownRevision
	}
	return m.statLocal(ctx, hash, refs)
}

// statLocal describes a commit present in the mirror.
func (m *mirror) statLocal(ctx context.Context, rev string, refs map[string]string) (*revInfo, error) {
	out, err := m.git(ctx, false, "-c", "log.showsignature=false", "log", "--no-decorate", "-n1", "--format=format:%H %ct", "--end-of-options", rev+"^{commit}", "--")
	if err != nil {
		return nil, errUnknownRevision
	}
	f := strings.Fields(string(out))
	if len(f) != 2 {
		return nil, fmt.Errorf("gitsource: unexpected git log output %q", out)
	}
	t, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return nil, fmt.Errorf("gitsource: invalid commit time in %q", out)
	}
	info := &revInfo{Name: f[0], Short: f[0][:12], Time: time.Unix(t, 0).UTC()}
	for ref, h := range refs {
		if tag, ok := strings.CutPrefix(ref, "refs/tags/"); ok && h == info.Name {
			info.Tags = append(info.Tags, tag)
		}
	}
	slices.Sort(info.Tags)
	return info, nil
}

// readFile returns file at commit hash, fs.ErrNotExist if there is none.
func (m *mirror) readFile(ctx context.Context, hash, file string, maxSize int64) ([]byte, error) {
	out, err := m.git(ctx, false, "cat-file", "blob", "--end-of-options", hash+":"+file)
	if err != nil {
		return nil, fs.ErrNotExist
	}
	if int64(len(out)) > maxSize {
		return nil, fmt.Errorf("gitsource: %s is larger than %d bytes", file, maxSize)
	}
	return out, nil
}

// recentTag returns the highest tag with prefix that is an ancestor of hash and
// that allowed accepts, or "".
func (m *mirror) recentTag(ctx context.Context, hash, prefix string, allowed func(string) bool) (string, error) {
	out, err := m.git(ctx, false, "for-each-ref", "--format=%(refname)", "--merged="+hash, "refs/tags/")
	if err != nil {
		return "", fmt.Errorf("gitsource: finding tags before %s: %w", hash, err)
	}
	var highest string
	for _, line := range strings.Split(string(out), "\n") {
		tag, ok := strings.CutPrefix(strings.TrimSpace(line), "refs/tags/")
		if !ok || !strings.HasPrefix(tag, prefix) || !allowed(tag) {
			continue
		}
		if semtag := tag[len(prefix):]; semver.Compare(semtag, highest) > 0 {
			highest = semtag
		}
	}
	if highest == "" {
		return "", nil
	}
	return prefix + highest, nil
}

// descendsFrom reports whether commit hash has tag among its ancestors.
func (m *mirror) descendsFrom(ctx context.Context, hash, tag string) (bool, error) {
	_, err := m.git(ctx, false, "merge-base", "--is-ancestor", "--", "refs/tags/"+tag, hash)
	if err == nil {
		return true, nil
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) && ee.ExitCode() == 1 {
		return false, nil
	}
	return false, fmt.Errorf("gitsource: %w", err)
}

// archivePattern names the temporary `git archive` outputs next to the mirrors.
const archivePattern = "archive-*.zip"

// archive writes `git archive` of subdir at hash to a temporary file, as the go
// command does, and returns it open at offset 0. The caller removes it.
func (m *mirror) archive(ctx context.Context, hash, subdir string) (*os.File, int64, error) {
	f, err := os.CreateTemp(filepath.Dir(m.dir), archivePattern)
	if err != nil {
		return nil, 0, fmt.Errorf("gitsource: %w", err)
	}
	cleanup := func() { f.Close(); os.Remove(f.Name()) }
	// -0 stores without compressing: the archive is only read back to build the
	// module zip, which x/mod/zip compresses itself, so compressing twice would
	// only cost time. File contents and the file set are the same either way.
	args := []string{"-c", "core.autocrlf=input", "-c", "core.eol=lf", "archive", "--format=zip", "-0", "--prefix=prefix/", "--end-of-options", hash}
	if subdir != "" {
		args = append(args, subdir)
	}
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, "git", args...)
	cmd.Dir = m.dir
	cmd.Env = gitEnv(m.dir)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = f, &stderr
	if err := cmd.Run(); err != nil {
		cleanup()
		if strings.Contains(stderr.String(), "did not match any files") {
			return nil, 0, fs.ErrNotExist
		}
		return nil, 0, &gitError{args: args, err: err, stderr: stderr.String()}
	}
	size, err := f.Seek(0, io.SeekEnd)
	if err == nil {
		_, err = f.Seek(0, io.SeekStart)
	}
	if err != nil {
		cleanup()
		return nil, 0, fmt.Errorf("gitsource: %w", err)
	}
	return f, size, nil
}
