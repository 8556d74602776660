package vulndb

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"golang.org/x/mod/semver"
)

// Advisory is what the policy sees of one report affecting a module version.
type Advisory struct {
	ID      string   `json:"id"`
	Aliases []string `json:"aliases"`
	Summary string   `json:"summary"`
	// Fixed is the first version after the requested one that is no longer
	// affected, "" when no fix exists.
	Fixed string `json:"fixed"`
}

// DB is one immutable copy of the database: the files to serve, and the reports
// indexed by module for lookups. Build makes one; a refresh replaces it whole.
type DB struct {
	modified time.Time
	// files maps an endpoint ("index/modules.json", "ID/GO-2024-1234.json",
	// each also with ".gz") to its bytes.
	files map[string][]byte
	// byModule lists, for each module path, the reports that name it.
	byModule map[string][]*Entry
	entries  map[string]*Entry
	// Origin says where this copy came from ("golang.org/x/vulndb@v0.0.0-…", a URL).
	Origin string
}

// moduleMeta and moduleVuln are the index/modules.json schema.
type moduleMeta struct {
	Path  string       `json:"path"`
	Vulns []moduleVuln `json:"vulns"`
}

type moduleVuln struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Fixed    string    `json:"fixed,omitempty"`
}

// vulnMeta is the index/vulns.json schema.
type vulnMeta struct {
	ID       string    `json:"id"`
	Modified time.Time `json:"modified"`
	Aliases  []string  `json:"aliases,omitempty"`
}

// Build makes a database from OSV reports, one JSON document each. A report
// that does not parse fails the build: a partial database would silently hide
// advisories.
func Build(reports [][]byte, origin string) (*DB, error) {
	db := &DB{
		files:    make(map[string][]byte, 2*len(reports)+6),
		byModule: map[string][]*Entry{},
		entries:  make(map[string]*Entry, len(reports)),
		Origin:   origin,
	}
	modules := map[string]*moduleMeta{}
	vulns := make([]vulnMeta, 0, len(reports))
	for _, raw := range reports {
		e, err := parseEntry(raw)
		if err != nil {
			return nil, err
		}
		if _, dup := db.entries[e.ID]; dup {
			return nil, fmt.Errorf("vulndb: two reports have the id %s", e.ID)
		}
		db.entries[e.ID] = e
		if e.Modified.After(db.modified) {
			db.modified = e.Modified
		}
		vulns = append(vulns, vulnMeta{ID: e.ID, Modified: e.Modified, Aliases: e.Aliases})
		if err := db.put("ID/"+e.ID+".json", bytes.TrimSpace(raw)); err != nil {
			return nil, err
		}
		for _, a := range e.Affected {
			p := a.Module.Path
			if p == "" {
				continue
			}
			m := modules[p]
			if m == nil {
				m = &moduleMeta{Path: p, Vulns: []moduleVuln{}}
				modules[p] = m
			}
			m.Vulns = append(m.Vulns, moduleVuln{ID: e.ID, Modified: e.Modified, Fixed: latestFix(a.Ranges)})
			if len(db.byModule[p]) == 0 || db.byModule[p][len(db.byModule[p])-1] != e {
				db.byModule[p] = append(db.byModule[p], e)
			}
		}
	}
	metas := make([]*moduleMeta, 0, len(modules))
	for _, m := range modules {
		slices.SortStableFunc(m.Vulns, func(a, b moduleVuln) int { return strings.Compare(a.ID, b.ID) })
		metas = append(metas, m)
	}
	slices.SortFunc(metas, func(a, b *moduleMeta) int { return strings.Compare(a.Path, b.Path) })
	slices.SortFunc(vulns, func(a, b vulnMeta) int { return strings.Compare(a.ID, b.ID) })
	for name, v := range map[string]any{
		"index/db.json": struct {
			Modified time.Time `json:"modified"`
		}{db.modified},
		"index/modules.json": metas,
		"index/vulns.json":   vulns,
	} {
		b, err := json.Marshal(v)
		if err != nil {
			return nil, err
		}
		if err := db.put(name, b); err != nil {
			return nil, err
		}
	}
	return db, nil
}

// put stores a file and its gzip variant.
func (db *DB) put(name string, b []byte) error {
	var gz bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&gz, gzip.DefaultCompression)
	if _, err := zw.Write(b); err != nil {
		return err
	}
	if err := zw.Close(); err != nil {
		return err
	}
	db.files[name] = b
	db.files[name+".gz"] = gz.Bytes()
	return nil
}

// File returns the file at name ("index/modules.json.gz", "ID/GO-2024-1234.json"),
// and whether it exists.
func (db *DB) File(name string) ([]byte, bool) {
	b, ok := db.files[name]
	return b, ok
}

// Modified is the time of the most recent change to any report.
func (db *DB) Modified() time.Time { return db.modified }

// Len is the number of reports.
func (db *DB) Len() int { return len(db.entries) }

// Entry returns the report with id, or nil.
func (db *DB) Entry(id string) *Entry { return db.entries[id] }

// Affecting returns the advisories that affect module at version (a canonical
// Go version), sorted by id. Withdrawn reports affect nothing.
func (db *DB) Affecting(module, version string) []Advisory {
	if !semver.IsValid(version) {
		return nil
	}
	var out []Advisory
	for _, e := range db.byModule[module] {
		if e.Withdrawn != nil {
			continue
		}
		for _, a := range e.Affected {
			if a.Module.Path != module {
				continue
			}
			if hit, fixed := affects(a.Ranges, version); hit {
				aliases := e.Aliases
				if aliases == nil {
					aliases = []string{}
				}
				out = append(out, Advisory{ID: e.ID, Aliases: aliases, Summary: e.Summary, Fixed: fixed})
				break
			}
		}
	}
	slices.SortFunc(out, func(a, b Advisory) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// AffectedModule is one module an advisory names, and a predicate for its
// affected versions.
type AffectedModule struct {
	Path string
	// Affects reports whether a version of Path is affected, and its fix.
	Affects func(version string) (bool, string)
}

// Modules returns the modules the report id affects; nil, false if there is no
// such report.
func (db *DB) Modules(id string) ([]AffectedModule, bool) {
	e := db.entries[id]
	if e == nil {
		return nil, false
	}
	var out []AffectedModule
	for _, a := range e.Affected {
		if a.Module.Path == "" {
			continue
		}
		ranges := a.Ranges
		out = append(out, AffectedModule{Path: a.Module.Path, Affects: func(v string) (bool, string) {
			if !semver.IsValid(v) {
				return false, ""
			}
			return affects(ranges, v)
		}})
	}
	return out, true
}
