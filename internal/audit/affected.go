package audit

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/derrors"
)

// AffectedModule names a module an advisory affects and which of its versions.
// The vulnerability database provides it (internal/vulndb); the audit trail
// knows nothing of advisories.
type AffectedModule struct {
	Path string
	// Affects reports whether a version is affected.
	Affects func(version string) (affected bool, fixed string)
}

// Exposure is one caller who pulled affected versions of one module: the blast
// radius of an advisory, row by row.
type Exposure struct {
	Subject string   `json:"subject"`
	Teams   []string `json:"teams"` // every team the subject pulled with
	Module  string   `json:"module"`
	// Versions are the affected versions pulled, highest first.
	Versions    []string  `json:"versions"`
	FirstPulled time.Time `json:"first_pulled"`
	LastPulled  time.Time `json:"last_pulled"`
	// FixedVersion is the first unaffected version, higher than every affected
	// one they pulled, that the subject pulled at or after their last affected
	// pull; "" when they have not (yet): those are the callers to chase.
	FixedVersion string    `json:"fixed_version,omitempty"`
	FixedPulled  time.Time `json:"fixed_pulled,omitzero"`
}

// Remediated reports whether the subject has pulled a fixed version since.
func (e Exposure) Remediated() bool { return e.FixedVersion != "" }

// Affected returns who pulled affected versions of the modules, one row per
// subject and module, those not yet remediated first, then by module and
// subject. A pull is a served .zip: the code entered the build then. The go
// command also reads .info and .mod of versions it never builds with (the
// latest version's go.mod for retractions, the module graph), and counting
// those would list callers who never had the affected code.
func Affected(ctx context.Context, db DB, modules []AffectedModule) (_ []Exposure, err error) {
	defer derrors.Wrap(&err, "audit.Affected")
	var out []Exposure
	for _, m := range modules {
		ex, err := affectedModule(ctx, db, m)
		if err != nil {
			return nil, err
		}
		out = append(out, ex...)
	}
	slices.SortStableFunc(out, func(a, b Exposure) int {
		if a.Remediated() != b.Remediated() {
			if a.Remediated() {
				return 1
			}
			return -1
		}
		if c := strings.Compare(a.Module, b.Module); c != 0 {
			return c
		}
		return strings.Compare(a.Subject, b.Subject)
	})
	return out, nil
}

func affectedModule(ctx context.Context, db DB, m AffectedModule) ([]Exposure, error) {
	// One row per subject, version and team set; the audit table's
	// (module, time) index serves the module filter.
	rows, err := db.Query(ctx, `SELECT subject, teams, version, min(time), max(time)
		FROM audit_events
		WHERE module = $1 AND version <> '' AND action = $2 AND outcome = $3
		GROUP BY subject, teams, version`, m.Path, string(ActionZip), string(OutcomeServed))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	type pulled struct {
		version     string
		first, last time.Time
	}
	bySubject := map[string]*Exposure{}
	clean := map[string][]pulled{}
	for rows.Next() {
		var subject, version string
		var teams []string
		var first, last time.Time
		if err := rows.Scan(&subject, &teams, &version, &first, &last); err != nil {
			return nil, err
		}
		first, last = first.UTC(), last.UTC()
		if hit, _ := m.Affects(version); !hit {
			clean[subject] = append(clean[subject], pulled{version, first, last})
			continue
		}
		e := bySubject[subject]
		if e == nil {
			e = &Exposure{Subject: subject, Module: m.Path, Teams: []string{}, FirstPulled: first, LastPulled: last}
			bySubject[subject] = e
		}
		for _, t := range teams {
			if !slices.Contains(e.Teams, t) {
				e.Teams = append(e.Teams, t)
			}
		}
		if !slices.Contains(e.Versions, version) {
			e.Versions = append(e.Versions, version)
		}
		if first.Before(e.FirstPulled) {
			e.FirstPulled = first
		}
		if last.After(e.LastPulled) {
			e.LastPulled = last
		}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	out := make([]Exposure, 0, len(bySubject))
	for subject, e := range bySubject {
		slices.Sort(e.Teams)
		slices.SortFunc(e.Versions, func(a, b string) int { return semver.Compare(b, a) })
		highest := e.Versions[0]
		for _, p := range clean[subject] {
			if semver.Compare(p.version, highest) <= 0 || p.last.Before(e.LastPulled) {
				continue
			}
			if e.FixedVersion == "" || semver.Compare(p.version, e.FixedVersion) < 0 {
				e.FixedVersion, e.FixedPulled = p.version, p.last
			}
		}
		out = append(out, *e)
	}
	return out, nil
}

// WriteExposures writes exposures in format: "table", "json" (one object per
// line) or "csv" (through the same CSV writer as every audit export).
func WriteExposures(w io.Writer, format string, exposures []Exposure) error {
	switch format {
	case FormatTable, "":
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "SUBJECT\tTEAMS\tMODULE\tAFFECTED VERSIONS\tFIRST PULLED\tLAST PULLED\tFIXED SINCE")
		for _, e := range exposures {
			fixed := "NO"
			if e.Remediated() {
				fixed = e.FixedVersion + " " + e.FixedPulled.Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", dash(e.Subject), dash(strings.Join(e.Teams, ",")), e.Module,
				strings.Join(e.Versions, ","), e.FirstPulled.Format(time.RFC3339), e.LastPulled.Format(time.RFC3339), fixed)
		}
		return tw.Flush()
	case FormatJSON:
		enc := json.NewEncoder(w)
		for i := range exposures {
			if err := enc.Encode(&exposures[i]); err != nil {
				return err
			}
		}
		return nil
	case FormatCSV:
		records := make([][]string, 0, len(exposures))
		for _, e := range exposures {
			fixedAt := ""
			if e.Remediated() {
				fixedAt = e.FixedPulled.Format(time.RFC3339Nano)
			}
			records = append(records, []string{
				e.Subject, strings.Join(e.Teams, ";"), e.Module, strings.Join(e.Versions, ";"),
				e.FirstPulled.Format(time.RFC3339Nano), e.LastPulled.Format(time.RFC3339Nano), e.FixedVersion, fixedAt,
			})
		}
		return writeCSVRecords(w, exposureCSVHeader, records, true)
	}
	return fmt.Errorf("audit: unknown format %q (want table, json or csv)", format)
}

var exposureCSVHeader = []string{"subject", "teams", "module", "affected_versions", "first_pulled", "last_pulled", "fixed_version", "fixed_pulled"}
