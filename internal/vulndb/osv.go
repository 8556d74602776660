// Package vulndb holds a copy of the Go vulnerability database: it reads OSV
// reports (from the golang.org/x/vulndb module's data/osv directory, or from an
// upstream database that already serves the layout), builds the files that
// `govulncheck -db <url>` reads, and answers which advisories affect a module at
// a version.
//
// The layout is the one documented at https://go.dev/security/vuln/database#api
// and read by golang.org/x/vuln's client: index/db.json (the database's last
// modification time), index/modules.json (for each module, its advisories with
// their modification time and latest fix), index/vulns.json (every advisory's
// id, modification time and aliases) and ID/<id>.json (one OSV report), each
// also as <name>.json.gz. The client asks for the .gz files and unzips them
// itself, so those are served as application/gzip without Content-Encoding.
package vulndb

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// Entry is the part of an OSV report modgate reads. The report is served as
// its upstream bytes, never re-encoded from this struct, so fields modgate does
// not know (symbols, credits, references) reach govulncheck unchanged.
type Entry struct {
	ID        string     `json:"id"`
	Modified  time.Time  `json:"modified"`
	Published time.Time  `json:"published"`
	Withdrawn *time.Time `json:"withdrawn,omitempty"`
	Aliases   []string   `json:"aliases,omitempty"`
	Summary   string     `json:"summary,omitempty"`
	Details   string     `json:"details,omitempty"`
	Affected  []Affected `json:"affected"`
}

// Affected names a module and the version ranges of it a report affects.
type Affected struct {
	Module struct {
		Path      string `json:"name"`
		Ecosystem string `json:"ecosystem"`
	} `json:"package"`
	Ranges []Range `json:"ranges,omitempty"`
}

// Range is an OSV range. Only SEMVER ranges are meaningful for Go modules.
type Range struct {
	Type   string  `json:"type"`
	Events []Event `json:"events"`
}

// Event introduces or fixes a vulnerability at a version. OSV versions for Go
// carry no "v" prefix ("1.2.4"), and "0" means "from the beginning".
type Event struct {
	Introduced string `json:"introduced,omitempty"`
	Fixed      string `json:"fixed,omitempty"`
}

// parseEntry decodes an OSV report and checks what modgate relies on.
func parseEntry(b []byte) (*Entry, error) {
	var e Entry
	if err := json.Unmarshal(b, &e); err != nil {
		return nil, fmt.Errorf("vulndb: decoding OSV report: %w", err)
	}
	if !validID(e.ID) {
		return nil, fmt.Errorf("vulndb: OSV report has an invalid id %q", e.ID)
	}
	return &e, nil
}

// validID accepts ids that are safe as one path element: GO-2024-1234, and the
// letters, digits and dashes other databases use.
func validID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, r := range id {
		if !(r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			return false
		}
	}
	return id[0] != '.'
}

// goVersion turns an OSV version into a Go module version ("1.2.4" → "v1.2.4").
func goVersion(v string) string {
	if v == "" || v == "0" {
		return ""
	}
	if strings.HasPrefix(v, "v") {
		return v
	}
	return "v" + v
}

// affects reports whether version (a canonical Go version such as v1.2.3) lies in
// one of the ranges, and if so the first version that fixes it ("" when none).
// The events of a range are applied in version order: an "introduced" at or
// below the version makes it affected, a later "fixed" at or below it makes it
// unaffected again.
func affects(ranges []Range, version string) (bool, string) {
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		type ev struct {
			v     string // Go version; "" sorts lowest (introduced "0")
			fixed bool
		}
		evs := make([]ev, 0, len(r.Events))
		for _, e := range r.Events {
			switch {
			case e.Introduced != "":
				evs = append(evs, ev{goVersion(e.Introduced), false})
			case e.Fixed != "":
				evs = append(evs, ev{goVersion(e.Fixed), true})
			}
		}
		slices.SortStableFunc(evs, func(a, b ev) int { return compareVersions(a.v, b.v) })
		in := false
		for _, e := range evs {
			if compareVersions(e.v, version) > 0 {
				if in && e.fixed {
					return true, e.v
				}
				continue
			}
			in = !e.fixed
		}
		if in {
			return true, ""
		}
	}
	return false, ""
}

func compareVersions(a, b string) int {
	switch {
	case a == b:
		return 0
	case a == "":
		return -1
	case b == "":
		return 1
	}
	return semver.Compare(a, b)
}

// latestFix is the index's "fixed" of a module: the highest fixed version of its
// SEMVER ranges, unless a later introduction supersedes it (then ""), as
// golang.org/x/vuln's index does. Without the "v" prefix, as the index wants.
func latestFix(ranges []Range) string {
	latest := ""
	for _, r := range ranges {
		if r.Type != "SEMVER" {
			continue
		}
		for _, e := range r.Events {
			if e.Fixed != "" && compareVersions(goVersion(latest), goVersion(e.Fixed)) < 0 {
				latest = e.Fixed
			}
		}
		for _, e := range r.Events {
			if e.Introduced != "" && e.Introduced != "0" && compareVersions(goVersion(latest), goVersion(e.Introduced)) < 0 {
				latest = ""
				break
			}
		}
	}
	return latest
}
