package gitsource

import (
	"archive/zip"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"os"
	"path"
	"slices"
	"sort"
	"strings"
	"time"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	modzip "golang.org/x/mod/zip"

	"github.com/modgate/modgate/internal/derrors"
)

// refetchInterval bounds how often a request for a revision the mirror lacks may
// trigger a fetch, so a burst of requests for a non-existent version costs one.
const refetchInterval = time.Second

// Module is one module in one repository: the go command's codeRepo.
type Module struct {
	m       *mirror
	refresh time.Duration

	modPath string
	// codeRoot is the repository's root module path; codeDir the module's
	// directory inside the repository ("" at the root), without a /vN element.
	codeRoot, codeDir string
	// pathPrefix and pathMajor split modPath ("corp.example/x", "/v2");
	// pseudoMajor is the major of pseudo-versions ("v2", or "" for v0/v1).
	pathPrefix, pathMajor, pseudoMajor string
}

func newModule(m *mirror, codeRoot, modPath string, refresh time.Duration) (*Module, error) {
	pathPrefix, pathMajor, ok := module.SplitPathVersion(modPath)
	if !ok {
		return nil, derrors.New(derrors.InvalidArgument, "invalid module path %q", modPath)
	}
	if codeRoot == modPath {
		pathPrefix = modPath
	}
	codeDir := ""
	if codeRoot != modPath {
		if !hasPathPrefix(pathPrefix, codeRoot) {
			return nil, derrors.New(derrors.NotFound, "not found: repository rooted at %s cannot contain module %s", codeRoot, modPath)
		}
		codeDir = strings.Trim(pathPrefix[len(codeRoot):], "/")
	}
	return &Module{
		m: m, refresh: refresh,
		modPath: modPath, codeRoot: codeRoot, codeDir: codeDir,
		pathPrefix: pathPrefix, pathMajor: pathMajor, pseudoMajor: module.PathMajorPrefix(pathMajor),
	}, nil
}

// Path returns the module path.
func (r *Module) Path() string { return r.modPath }

// invalidVersion is the go command's "invalid version" error, a 404 in the
// GOPROXY protocol. Its text names module paths and versions, nothing internal.
func (r *Module) invalidVersion(v string, format string, args ...any) error {
	err := &module.ModuleError{Path: r.modPath, Err: &module.InvalidVersionError{Version: v, Err: fmt.Errorf(format, args...)}}
	return derrors.WithCause(derrors.NotFound, err, "%s", err.Error())
}

// errDeclaredPath is the cause of a refusal of a module whose go.mod declares
// another module path than the one requested.
var errDeclaredPath = errors.New("gitsource: go.mod declares another module path")

// declaredPathError refuses a module whose go.mod declares another path than the
// one requested. The go command treats paths differing only by case as different
// modules, but git hosts resolve them to one repository: without this check
// corp.example/Payments/ledger would serve corp.example/payments/ledger's code
// under a path no owner or deny-list entry was written for. (The go command makes
// the same check, "module declares its path as", but only after it has the
// bytes.) 404, not 403: no policy refused anything — the requested module does
// not exist, the repository holds another one — and 404 is what the protocol
// answers for every other version that breaks the module rules.
func (r *Module) declaredPathError(version, declared string) error {
	return derrors.WithCause(derrors.NotFound, errDeclaredPath,
		"%s@%s: go.mod declares module path %s, not %s: refusing a module that does not declare exactly the requested path",
		r.modPath, version, declared, r.modPath)
}

// checkDeclaredPath runs findDir's checks on version and returns only a
// declared-path refusal: .info and list answer for versions whose go.mod they
// otherwise do not read, and must not vouch for a module that is not there.
func (r *Module) checkDeclaredPath(ctx context.Context, version string) error {
	if _, _, _, err := r.findDir(ctx, version); errors.Is(err, errDeclaredPath) {
		return err
	}
	return nil
}

func unknownRevision(rev string) error {
	return derrors.New(derrors.NotFound, "unknown revision %s", rev)
}

// sync brings the mirror up to date: no older than r.refresh when fresh, else
// merely fetched once.
func (r *Module) sync(ctx context.Context, fresh bool) error {
	maxAge := time.Duration(math.MaxInt64)
	if fresh {
		maxAge = r.refresh
	}
	return r.m.refresh(ctx, maxAge)
}

// resolve finds rev in the mirror, fetching once more when the mirror lacks it
// (a tag pushed a moment ago). It returns errUnknownRevision when the remote
// has no such revision either.
func (r *Module) resolve(ctx context.Context, rev string, fresh bool) (*revInfo, error) {
	if err := r.sync(ctx, fresh); err != nil {
		return nil, err
	}
	info, err := r.m.stat(ctx, rev)
	if errors.Is(err, errUnknownRevision) && !r.m.fetchedWithin(refetchInterval) {
		if err := r.m.fetch(ctx); err != nil {
			return nil, err
		}
		info, err = r.m.stat(ctx, rev)
	}
	return info, err
}

// Versions lists the module's tagged versions, as `go list -m -versions` shows
// them: semver tags (prefixed with the module's directory for modules in a
// subdirectory) of the module's major version, plus +incompatible ones.
//
// A module whose newest version's go.mod declares another path is refused
// (declaredPathError).
func (r *Module) Versions(ctx context.Context) ([]string, error) {
	if err := r.sync(ctx, true); err != nil {
		return nil, err
	}
	list, err := r.versions(ctx)
	if err != nil || len(list) == 0 {
		return list, err
	}
	if err := r.checkDeclaredPath(ctx, list[len(list)-1]); err != nil {
		return nil, err
	}
	return list, nil
}

func (r *Module) versions(ctx context.Context) ([]string, error) {
	refs, err := r.m.refs(ctx)
	if err != nil {
		return nil, err
	}
	p := ""
	if r.codeDir != "" {
		p = r.codeDir + "/"
	}
	var list, incompatible []string
	for _, tag := range tagsWithPrefix(refs, p) {
		v := tag[len(p):]
		if v == "" || v != semver.Canonical(v) || module.IsPseudoVersion(v) {
			continue
		}
		if err := module.CheckPathMajor(v, r.pathMajor); err != nil {
			if r.codeDir == "" && r.pathMajor == "" && semver.Major(v) > "v1" {
				incompatible = append(incompatible, v)
			}
			continue
		}
		list = append(list, v)
	}
	semver.Sort(list)
	semver.Sort(incompatible)
	return r.appendIncompatible(ctx, refs, list, incompatible)
}

// appendIncompatible adds v2+ versions without a go.mod as +incompatible, by the
// go command's rules: none if the latest compatible version has a go.mod, and
// none of a major version whose latest release has one.
func (r *Module) appendIncompatible(ctx context.Context, refs map[string]string, list, incompatible []string) ([]string, error) {
	if len(incompatible) == 0 || r.pathMajor != "" {
		return list, nil
	}
	hasGoMod := func(v string) (bool, error) {
		_, err := r.m.readFile(ctx, refs["refs/tags/"+v], "go.mod", modzip.MaxGoMod)
		if err == nil {
			return true, nil
		}
		if errors.Is(err, fs.ErrNotExist) {
			return false, nil
		}
		return false, err
	}
	if len(list) > 0 {
		ok, err := hasGoMod(list[len(list)-1])
		if err != nil || ok {
			return list, err
		}
	}
	var lastMajor string
	var lastMajorHasGoMod bool
	for i, v := range incompatible {
		if major := semver.Major(v); major != lastMajor {
			rem := incompatible[i:]
			j := sort.Search(len(rem), func(j int) bool { return semver.Major(rem[j]) != major })
			var err error
			lastMajor = major
			if lastMajorHasGoMod, err = hasGoMod(rem[j-1]); err != nil {
				return nil, err
			}
		}
		if !lastMajorHasGoMod {
			list = append(list, v+"+incompatible")
		}
	}
	return list, nil
}

// Latest answers @latest: the newest listed version (releases before
// pre-releases, retracted ones last), or, for a module without tagged versions,
// the pseudo-version of the repository's default branch head, as the go
// command's direct mode computes it.
func (r *Module) Latest(ctx context.Context) (*Info, error) {
	versions, err := r.Versions(ctx)
	if err != nil {
		return nil, err
	}
	if len(versions) > 0 {
		isRetracted, err := r.retractedVersions(ctx)
		if err != nil {
			isRetracted = func(string) bool { return false }
		}
		best := ""
		better := func(v, than string) bool {
			if than == "" {
				return true
			}
			if rv, rt := isRetracted(v), isRetracted(than); rv != rt {
				return !rv
			}
			if pv, pt := semver.Prerelease(v) != "", semver.Prerelease(than) != ""; pv != pt {
				return !pv
			}
			return semver.Compare(v, than) > 0
		}
		for _, v := range versions {
			if better(v, best) {
				best = v
			}
		}
		return r.Stat(ctx, best)
	}
	refs, err := r.m.refs(ctx)
	if err != nil {
		return nil, err
	}
	if refs["HEAD"] == "" {
		return nil, derrors.New(derrors.NotFound, "no commits in the repository of %s", r.modPath)
	}
	info, err := r.m.statLocal(ctx, refs["HEAD"], refs)
	if err != nil {
		return nil, err
	}
	latest, err := r.convert(ctx, info, "")
	if err != nil {
		return nil, err
	}
	if err := r.checkDeclaredPath(ctx, latest.Version); err != nil {
		return nil, err
	}
	return latest, nil
}

// Stat answers .info for a canonical version or a query: a branch, a tag, a
// commit hash, or a pseudo-version.
func (r *Module) Stat(ctx context.Context, rev string) (*Info, error) {
	if rev == "latest" {
		return r.Latest(ctx)
	}
	canonical := semver.IsValid(rev) && module.CanonicalVersion(rev) == rev && !module.IsPseudoVersion(rev)
	info, err := r.resolve(ctx, r.revToRev(rev), !canonical)
	if errors.Is(err, errUnknownRevision) {
		return nil, unknownRevision(rev)
	}
	if err != nil {
		return nil, err
	}
	v, err := r.convert(ctx, info, rev)
	if err != nil {
		return nil, err
	}
	if err := r.checkDeclaredPath(ctx, v.Version); err != nil {
		return nil, err
	}
	return v, nil
}

// revToRev maps a version to the git revision it names: the tag (with the
// module's directory prefix), or the commit of a pseudo-version.
func (r *Module) revToRev(rev string) string {
	if semver.IsValid(rev) {
		if module.IsPseudoVersion(rev) {
			h, _ := module.PseudoVersionRev(rev)
			return h
		}
		rev = strings.TrimSuffix(rev, "+incompatible")
		if r.codeDir == "" {
			return rev
		}
		return r.codeDir + "/" + rev
	}
	return rev
}

// convert turns a commit into the version the go command would give it: the
// tag it was asked by, else its highest canonical tag, else a pseudo-version
// based on the most recent reachable tag (coderepo.go's convert).
func (r *Module) convert(ctx context.Context, info *revInfo, statVers string) (*Info, error) {
	incompatibleOk := map[string]bool{}
	canUseIncompatible := func(v string) bool {
		if r.codeDir != "" || r.pathMajor != "" {
			return false
		}
		ok, seen := incompatibleOk[""]
		if !seen {
			_, errGoMod := r.m.readFile(ctx, info.Name, "go.mod", modzip.MaxGoMod)
			ok = errGoMod != nil
			incompatibleOk[""] = ok
		}
		if !ok {
			return false
		}
		if v != "" && !strings.HasSuffix(statVers, "+incompatible") {
			major := semver.Major(v)
			ok, seen = incompatibleOk[major]
			if !seen {
				_, errGoModSub := r.m.readFile(ctx, info.Name, path.Join(major, "go.mod"), modzip.MaxGoMod)
				ok = errGoModSub != nil
				incompatibleOk[major] = ok
			}
			if !ok {
				return false
			}
		}
		return true
	}

	checkCanonical := func(v string) (*Info, error) {
		if _, _, _, err := r.findDir(ctx, v); err != nil {
			return nil, err
		}
		if v == strings.TrimSuffix(statVers, "+incompatible") {
			v = statVers
		}
		base := strings.TrimSuffix(v, "+incompatible")
		var errIncompatible error
		if !module.MatchPathMajor(base, r.pathMajor) {
			if canUseIncompatible(base) {
				v = base + "+incompatible"
			} else if r.pathMajor != "" {
				errIncompatible = r.invalidVersion(v, "module path includes a major version suffix, so major version must match")
			} else {
				errIncompatible = r.invalidVersion(v, "module contains a go.mod file, so module path must match major version (%q)", path.Join(r.pathPrefix, semver.Major(v)))
			}
		} else if strings.HasSuffix(v, "+incompatible") {
			errIncompatible = r.invalidVersion(v, "+incompatible suffix not allowed: major version %s is compatible", semver.Major(v))
		}
		if statVers != "" && statVers == module.CanonicalVersion(statVers) {
			if statBase := strings.TrimSuffix(statVers, "+incompatible"); statBase != base {
				return nil, r.invalidVersion(statVers, "resolves to version %v (%s is not a tag)", v, statBase)
			}
		}
		if errIncompatible != nil {
			return nil, errIncompatible
		}
		return &Info{Version: v, Time: info.Time}, nil
	}

	if module.IsPseudoVersion(statVers) {
		out, err := checkCanonical(statVers)
		if err != nil {
			return nil, err
		}
		if err := r.validatePseudoVersion(ctx, info, statVers); err != nil {
			return nil, err
		}
		return out, nil
	}

	tagPrefix := ""
	if r.codeDir != "" {
		tagPrefix = r.codeDir + "/"
	}
	isRetracted, err := r.retractedVersions(ctx)
	if err != nil {
		isRetracted = func(string) bool { return false }
	}
	tagToVersion := func(tag string) (v string, tagIsCanonical bool) {
		if !strings.HasPrefix(tag, tagPrefix) {
			return "", false
		}
		trimmed := tag[len(tagPrefix):]
		if module.IsPseudoVersion(tag) {
			return "", false
		}
		v = semver.Canonical(trimmed) // not module.CanonicalVersion: no +incompatible from a tag
		if v == "" || !strings.HasPrefix(trimmed, v) {
			return "", false
		}
		return v, v == trimmed
	}

	// The tag the caller asked by, if the commit carries it.
	if v, tagIsCanonical := tagToVersion(r.revToRev(statVers)); tagIsCanonical && statVers != "" && slices.Contains(info.Tags, r.revToRev(statVers)) {
		if out, err := checkCanonical(v); err == nil {
			return out, nil
		}
	}

	var highestCanonical, pseudoBase string
	for _, pathTag := range info.Tags {
		v, tagIsCanonical := tagToVersion(pathTag)
		if statVers != "" && semver.Compare(v, statVers) == 0 {
			if tagIsCanonical {
				return checkCanonical(v)
			}
			pseudoBase = v
		}
		if tagIsCanonical && semver.Compare(highestCanonical, v) < 0 && !isRetracted(v) {
			if module.MatchPathMajor(v, r.pathMajor) || canUseIncompatible(v) {
				highestCanonical = v
			}
		}
	}
	if highestCanonical != "" {
		return checkCanonical(highestCanonical)
	}

	tagAllowed := func(tag string) bool {
		v, _ := tagToVersion(tag)
		if v == "" {
			return false
		}
		if !module.MatchPathMajor(v, r.pathMajor) && !canUseIncompatible(v) {
			return false
		}
		return !isRetracted(v)
	}
	if pseudoBase == "" {
		tag, err := r.m.recentTag(ctx, info.Name, tagPrefix, tagAllowed)
		if err != nil {
			return nil, err
		}
		if tag != "" {
			pseudoBase, _ = tagToVersion(tag)
		}
	}
	return checkCanonical(module.PseudoVersion(r.pseudoMajor, pseudoBase, info.Time, info.Short))
}

// validatePseudoVersion checks that a pseudo-version asked for is the one the
// go command would compute for its commit: same hash prefix, same time, and a
// base tag that the commit descends from.
func (r *Module) validatePseudoVersion(ctx context.Context, info *revInfo, version string) error {
	invalid := func(format string, args ...any) error { return r.invalidVersion(version, format, args...) }
	rev, err := module.PseudoVersionRev(version)
	if err != nil {
		return invalid("%v", err)
	}
	if rev != info.Short {
		switch {
		case strings.HasPrefix(rev, info.Short):
			return invalid("revision is longer than canonical (expected %s)", info.Short)
		case strings.HasPrefix(info.Short, rev):
			return invalid("revision is shorter than canonical (expected %s)", info.Short)
		default:
			return invalid("does not match short name of revision (expected %s)", info.Short)
		}
	}
	t, err := module.PseudoVersionTime(version)
	if err != nil {
		return invalid("%v", err)
	}
	if !t.Equal(info.Time.Truncate(time.Second)) {
		return invalid("does not match version-control timestamp (expected %s)", info.Time.UTC().Format(module.PseudoVersionTimestampFormat))
	}
	tagPrefix := ""
	if r.codeDir != "" {
		tagPrefix = r.codeDir + "/"
	}
	base, err := module.PseudoVersionBase(strings.TrimSuffix(version, "+incompatible"))
	if err != nil {
		return invalid("%v", err)
	}
	if base == "" {
		if r.pseudoMajor == "" && semver.Major(version) == "v1" {
			return invalid("major version without preceding tag must be v0, not v1")
		}
		return nil
	}
	for _, tag := range info.Tags {
		if strings.TrimPrefix(tag, tagPrefix) == base {
			return invalid("tag (%s) found on revision %s is already canonical, so should not be replaced with a pseudo-version derived from that tag", tag, rev)
		}
	}
	refs, err := r.m.refs(ctx)
	if err != nil {
		return err
	}
	var lastTag string
	for _, tag := range tagsWithPrefix(refs, tagPrefix+base) {
		if semver.Compare(strings.TrimPrefix(tag, tagPrefix), base) == 0 {
			lastTag = tag
			ok, err := r.m.descendsFrom(ctx, info.Name, tag)
			if err != nil {
				return err
			}
			if ok {
				return nil
			}
		}
	}
	if lastTag == "" {
		return invalid("preceding tag (%s) not found", base)
	}
	return invalid("revision %s is not a descendent of preceding tag (%s)", rev, lastTag)
}

// retractedVersions reads the retract directives of the highest release's go.mod
// (the highest pre-release's if there is no release).
func (r *Module) retractedVersions(ctx context.Context) (func(string) bool, error) {
	versions, err := r.versions(ctx)
	if err != nil {
		return nil, err
	}
	for i, v := range versions {
		if strings.HasSuffix(v, "+incompatible") {
			versions = versions[:i]
			break
		}
	}
	if len(versions) == 0 {
		return func(string) bool { return false }, nil
	}
	highest := ""
	for i := len(versions) - 1; i >= 0; i-- {
		if semver.Prerelease(versions[i]) == "" {
			highest = versions[i]
			break
		}
	}
	if highest == "" {
		highest = versions[len(versions)-1]
	}
	data, err := r.GoMod(ctx, highest)
	if err != nil {
		return nil, err
	}
	f, err := modfile.ParseLax("go.mod", data, nil)
	if err != nil {
		return nil, err
	}
	var intervals []modfile.VersionInterval
	for _, rt := range f.Retract {
		intervals = append(intervals, rt.VersionInterval)
	}
	return func(v string) bool {
		for _, iv := range intervals {
			if semver.Compare(iv.Low, v) <= 0 && semver.Compare(v, iv.High) <= 0 {
				return true
			}
		}
		return false
	}, nil
}

// findDir locates the module at version: the commit, the directory inside the
// repository (the module's own, or its /vN major subdirectory), and the go.mod
// there (nil for a module without one).
func (r *Module) findDir(ctx context.Context, version string) (hash, dir string, gomod []byte, err error) {
	if !semver.IsValid(version) {
		return "", "", nil, r.invalidVersion(version, "syntax error")
	}
	rev := r.revToRev(version)
	info, err := r.resolve(ctx, rev, false)
	if errors.Is(err, errUnknownRevision) {
		return "", "", nil, unknownRevision(version)
	}
	if err != nil {
		return "", "", nil, err
	}
	hash = info.Name
	readGoMod := func(file string) ([]byte, error) {
		data, err := r.m.readFile(ctx, hash, file, modzip.MaxGoMod)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("gitsource: reading %s/%s at revision %s: %w", r.codeRoot, file, rev, err)
		}
		return data, err
	}

	file1 := path.Join(r.codeDir, "go.mod")
	gomod1, err1 := readGoMod(file1)
	if err1 != nil && !errors.Is(err1, fs.ErrNotExist) {
		return "", "", nil, err1
	}
	mpath1 := modfile.ModulePath(gomod1)
	found1 := err1 == nil && isMajor(mpath1, r.pathMajor)

	var file2 string
	if r.pathMajor != "" && r.codeRoot != r.modPath && !strings.HasPrefix(r.pathMajor, ".") {
		dir2 := path.Join(r.codeDir, r.pathMajor[1:])
		file2 = path.Join(dir2, "go.mod")
		gomod2, err2 := readGoMod(file2)
		if err2 != nil && !errors.Is(err2, fs.ErrNotExist) {
			return "", "", nil, err2
		}
		mpath2 := modfile.ModulePath(gomod2)
		found2 := err2 == nil && isMajor(mpath2, r.pathMajor)
		if found1 && found2 {
			return "", "", nil, r.invalidVersion(version, "%s/%s and ...%s/go.mod both have ...%s module paths at revision %s", r.pathPrefix, file1, r.pathMajor, r.pathMajor, rev)
		}
		if found2 {
			if mpath2 != r.modPath {
				return "", "", nil, r.declaredPathError(version, mpath2)
			}
			return hash, dir2, gomod2, nil
		}
		if err2 == nil {
			if mpath2 == "" {
				return "", "", nil, r.invalidVersion(version, "%s/%s is missing module path at revision %s", r.codeRoot, file2, rev)
			}
			return "", "", nil, r.invalidVersion(version, "%s/%s has non-...%s module path %q at revision %s", r.codeRoot, file2, r.pathMajor, mpath2, rev)
		}
	}
	if found1 {
		if mpath1 != r.modPath {
			return "", "", nil, r.declaredPathError(version, mpath1)
		}
		return hash, r.codeDir, gomod1, nil
	}
	if err1 == nil {
		suffix := ""
		if file2 != "" {
			suffix = fmt.Sprintf(" (and ...%s/go.mod does not exist)", r.pathMajor)
		}
		if mpath1 == "" {
			return "", "", nil, r.invalidVersion(version, "%s is missing module path%s at revision %s", file1, suffix, rev)
		}
		if r.pathMajor != "" {
			return "", "", nil, r.invalidVersion(version, "%s has non-...%s module path %q%s at revision %s", file1, r.pathMajor, mpath1, suffix, rev)
		}
		if _, _, ok := module.SplitPathVersion(mpath1); !ok {
			return "", "", nil, r.invalidVersion(version, "%s has malformed module path %q%s at revision %s", file1, mpath1, suffix, rev)
		}
		return "", "", nil, r.invalidVersion(version, "%s has post-%s module path %q%s at revision %s", file1, semver.Major(version), mpath1, suffix, rev)
	}
	if r.codeDir == "" && (r.pathMajor == "" || strings.HasPrefix(r.pathMajor, ".")) {
		return hash, "", nil, nil // a module without go.mod: one is synthesized
	}
	if file2 != "" {
		return "", "", nil, r.invalidVersion(version, "missing %s/go.mod and ...%s/go.mod at revision %s", r.pathPrefix, r.pathMajor, rev)
	}
	return "", "", nil, r.invalidVersion(version, "missing %s/go.mod at revision %s", r.pathPrefix, rev)
}

// isMajor reports whether a go.mod's module path mpath fits pathMajor.
func isMajor(mpath, pathMajor string) bool {
	if mpath == "" {
		return false
	}
	_, mpathMajor, ok := module.SplitPathVersion(mpath)
	if !ok {
		return false
	}
	if pathMajor == "" {
		switch module.PathMajorPrefix(mpathMajor) {
		case "", "v0", "v1":
			return true
		default:
			return false
		}
	}
	if mpathMajor == "" {
		return false
	}
	return pathMajor[1:] == mpathMajor[1:]
}

// checkVersion rejects non-canonical versions and pseudo-versions that are not
// the go command's for their commit.
func (r *Module) checkVersion(ctx context.Context, version string) error {
	if version != module.CanonicalVersion(version) {
		return derrors.New(derrors.InvalidArgument, "version %s is not canonical", version)
	}
	if module.IsPseudoVersion(version) {
		if _, err := r.Stat(ctx, version); err != nil {
			return err
		}
	}
	return nil
}

// GoMod returns the go.mod of version, or the synthesized "module <path>" for a
// version without one.
func (r *Module) GoMod(ctx context.Context, version string) ([]byte, error) {
	if err := r.checkVersion(ctx, version); err != nil {
		return nil, err
	}
	hash, dir, gomod, err := r.findDir(ctx, version)
	if err != nil {
		return nil, err
	}
	if gomod != nil {
		return gomod, nil
	}
	data, err := r.m.readFile(ctx, hash, path.Join(dir, "go.mod"), modzip.MaxGoMod)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Appendf(nil, "module %s\n", modfile.AutoQuote(r.modPath)), nil
		}
		return nil, err
	}
	return data, nil
}

// Zip writes the module zip of version to w: `git archive` of the module's
// directory, the repository's LICENSE added for a module in a subdirectory that
// has none, then golang.org/x/mod/zip's rules (no vendor trees, no nested
// modules) — exactly the go command's steps, so the hash is the same.
func (r *Module) Zip(ctx context.Context, w io.Writer, version string) error {
	if err := r.checkVersion(ctx, version); err != nil {
		return err
	}
	hash, subdir, _, err := r.findDir(ctx, version)
	if err != nil {
		return err
	}
	f, size, err := r.m.archive(ctx, hash, subdir)
	if errors.Is(err, fs.ErrNotExist) {
		return r.invalidVersion(version, "no files in %s at revision %s", subdir, hash[:12])
	}
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if size > modzip.MaxZipFile {
		return derrors.New(derrors.TooLarge, "%s@%s: module source tree too large", r.modPath, version)
	}
	zr, err := zip.NewReader(f, size)
	if err != nil {
		return fmt.Errorf("gitsource: reading git archive: %w", err)
	}
	if subdir = strings.Trim(subdir, "/"); subdir != "" {
		subdir += "/"
	}
	var files []modzip.File
	haveLICENSE := false
	topPrefix := ""
	for _, zf := range zr.File {
		if topPrefix == "" {
			i := strings.Index(zf.Name, "/")
			if i < 0 {
				return fmt.Errorf("gitsource: git archive without a top-level directory")
			}
			topPrefix = zf.Name[:i+1]
		}
		name, ok := strings.CutPrefix(zf.Name, topPrefix)
		if !ok {
			return fmt.Errorf("gitsource: git archive with more than one top-level directory")
		}
		if name, ok = strings.CutPrefix(name, subdir); !ok || name == "" || strings.HasSuffix(name, "/") {
			continue
		}
		files = append(files, archiveFile{name: name, f: zf})
		if name == "LICENSE" {
			haveLICENSE = true
		}
	}
	if !haveLICENSE && subdir != "" {
		if data, err := r.m.readFile(ctx, hash, "LICENSE", modzip.MaxLICENSE); err == nil {
			files = append(files, dataFile{name: "LICENSE", data: data})
		}
	}
	if err := modzip.Create(w, module.Version{Path: r.modPath, Version: version}, files); err != nil {
		return r.invalidVersion(version, "creating module zip: %v", err)
	}
	return nil
}

type archiveFile struct {
	name string
	f    *zip.File
}

func (f archiveFile) Path() string                 { return f.name }
func (f archiveFile) Lstat() (fs.FileInfo, error)  { return f.f.FileInfo(), nil }
func (f archiveFile) Open() (io.ReadCloser, error) { return f.f.Open() }

type dataFile struct {
	name string
	data []byte
}

func (f dataFile) Path() string                { return f.name }
func (f dataFile) Lstat() (fs.FileInfo, error) { return dataFileInfo{f}, nil }
func (f dataFile) Open() (io.ReadCloser, error) {
	return io.NopCloser(strings.NewReader(string(f.data))), nil
}

type dataFileInfo struct{ f dataFile }

func (fi dataFileInfo) Name() string       { return path.Base(fi.f.name) }
func (fi dataFileInfo) Size() int64        { return int64(len(fi.f.data)) }
func (fi dataFileInfo) Mode() fs.FileMode  { return 0o644 }
func (fi dataFileInfo) ModTime() time.Time { return time.Time{} }
func (fi dataFileInfo) IsDir() bool        { return false }
func (fi dataFileInfo) Sys() any           { return nil }

func hasPathPrefix(s, prefix string) bool {
	switch {
	case len(s) == len(prefix):
		return s == prefix
	case len(s) > len(prefix):
		if prefix != "" && prefix[len(prefix)-1] == '/' {
			return strings.HasPrefix(s, prefix)
		}
		return s[len(prefix)] == '/' && s[:len(prefix)] == prefix
	}
	return false
}
