// Package mirror implements modgate's mirror operations: pre-warming the cache
// from go.sum files and module lists (sync), on a schedule inside `modgate serve`,
// and moving cached modules into networks without an outside link (bundles).
package mirror

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"sort"
	"strings"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"
	"golang.org/x/mod/sumdb/dirhash"
)

// Target is one module version to sync. ModOnly versions are needed only for
// their go.mod (module graph pruning): go.sum lists them with a "/go.mod" line
// and no content line, and the go command never downloads their zip.
type Target struct {
	Path    string
	Version string
	ModOnly bool
	// ZipSum and ModSum are the expected h1: hashes, from go.sum; empty when the
	// input did not say.
	ZipSum string
	ModSum string
}

func (t Target) String() string { return t.Path + "@" + t.Version }

// ParseGoSum returns the module versions a go.sum names. A go.sum written by the
// go command lists every module version its build needs — a "/go.mod" line for each
// module in the graph, a content line for each whose packages are loaded — so
// fetching exactly those .mod and .zip files is what `go mod download all` needs.
func ParseGoSum(data []byte) ([]Target, error) {
	byKey := map[string]*Target{}
	var order []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) != 3 || !strings.HasPrefix(f[2], "h1:") {
			return nil, fmt.Errorf("mirror: go.sum line %d: want \"module version h1:hash\"", n)
		}
		ver, isMod := strings.CutSuffix(f[1], "/go.mod")
		if err := module.Check(f[0], ver); err != nil {
			return nil, fmt.Errorf("mirror: go.sum line %d: %w", n, err)
		}
		key := f[0] + "@" + ver
		t := byKey[key]
		if t == nil {
			t = &Target{Path: f[0], Version: ver, ModOnly: true}
			byKey[key] = t
			order = append(order, key)
		}
		if isMod {
			t.ModSum = f[2]
		} else {
			t.ZipSum, t.ModOnly = f[2], false
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("mirror: reading go.sum: %w", err)
	}
	out := make([]Target, 0, len(order))
	for _, k := range order {
		out = append(out, *byKey[k])
	}
	return out, nil
}

// ParseGoMod returns the module versions a go.mod requires. A go.mod alone names
// only part of the graph (before go 1.17, only the direct requirements); pass the
// go.sum for the whole graph.
func ParseGoMod(name string, data []byte) ([]Target, error) {
	f, err := modfile.ParseLax(name, data, nil)
	if err != nil {
		return nil, fmt.Errorf("mirror: %w", err)
	}
	var out []Target
	for _, r := range f.Require {
		out = append(out, Target{Path: r.Mod.Path, Version: r.Mod.Version})
	}
	return out, nil
}

// ParseModuleArgs splits "path@version" entries (exact targets) from bare module
// paths (synced at their latest versions).
func ParseModuleArgs(args []string) (exact []Target, bare []string, err error) {
	for _, a := range args {
		a = strings.TrimSpace(a)
		if a == "" {
			continue
		}
		p, v, ok := strings.Cut(a, "@")
		if !ok {
			if err := module.CheckPath(p); err != nil {
				return nil, nil, fmt.Errorf("mirror: %w", err)
			}
			bare = append(bare, p)
			continue
		}
		if err := module.Check(p, v); err != nil {
			return nil, nil, fmt.Errorf("mirror: %q: %w", a, err)
		}
		exact = append(exact, Target{Path: p, Version: v})
	}
	return exact, bare, nil
}

// LatestVersions picks the newest n release versions of a @v/list body, newest
// first; pre-releases only when there is no release at all, as the go command's
// @latest does.
func LatestVersions(list []byte, n int) []string {
	var rel, pre []string
	for _, v := range strings.Fields(string(list)) {
		switch {
		case !semver.IsValid(v):
		case semver.Prerelease(v) == "":
			rel = append(rel, v)
		default:
			pre = append(pre, v)
		}
	}
	vs := rel
	if len(vs) == 0 {
		vs = pre
	}
	sort.Slice(vs, func(i, j int) bool { return semver.Compare(vs[i], vs[j]) > 0 })
	if len(vs) > n {
		vs = vs[:n]
	}
	return vs
}

// GoModHash is the go.sum "/go.mod" hash of a go.mod file's bytes.
func GoModHash(data []byte) (string, error) {
	return dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
}
