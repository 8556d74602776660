package audit

import (
	"context"
	"slices"
	"time"

	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/derrors"
)

// VersionSeen summarises the served pulls of one version of a module.
type VersionSeen struct {
	Version     string
	FirstPulled time.Time // when modgate first served it: the object entered the cache then
	LastPulled  time.Time
	// FirstSource is where the first pull's bytes came from (an upstream mirror,
	// "published", a private git route): the module's provenance in this proxy.
	FirstSource string
	Pulls       int64
	Subjects    int64 // distinct callers
}

// ModuleVersions returns every version of module that modgate served (.info, .mod
// or .zip), newest version first.
func ModuleVersions(ctx context.Context, db DB, module string) (_ []VersionSeen, err error) {
	defer derrors.Wrap(&err, "audit.ModuleVersions(%q)", module)
	rows, err := db.Query(ctx, `SELECT version, min(time), max(time),
		(array_agg(source ORDER BY time, id))[1], count(*), count(DISTINCT subject)
		FROM audit_events
		WHERE module = $1 AND version <> '' AND action = ANY($2) AND outcome = $3
		GROUP BY version`, module, toStrings(PullActions), string(OutcomeServed))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []VersionSeen
	for rows.Next() {
		var v VersionSeen
		if err := rows.Scan(&v.Version, &v.FirstPulled, &v.LastPulled, &v.FirstSource, &v.Pulls, &v.Subjects); err != nil {
			return nil, err
		}
		v.FirstPulled, v.LastPulled = v.FirstPulled.UTC(), v.LastPulled.UTC()
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	slices.SortFunc(out, func(a, b VersionSeen) int { return semver.Compare(b.Version, a.Version) })
	return out, nil
}
