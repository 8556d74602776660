package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/semver"

	"github.com/modgate/modgate/internal/testing/pgtest"
)

// below returns a predicate for "versions below fixed are affected".
func below(fixed string) func(string) (bool, string) {
	return func(v string) (bool, string) {
		if semver.Compare(v, fixed) < 0 {
			return true, fixed
		}
		return false, ""
	}
}

func TestAffected(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	w := startWriter(t, pool, WriterConfig{})
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Hour).UTC()
	at := func(h int) time.Time { return base.Add(time.Duration(h) * time.Hour) }
	evs := []Event{
		// alice pulled an affected version, then the fix: remediated.
		{Time: at(0), Subject: "alice", Teams: []string{"payments"}, Action: ActionZip, Module: "m.test/m", Version: "v1.2.3", Outcome: OutcomeServed},
		{Time: at(5), Subject: "alice", Teams: []string{"payments"}, Action: ActionZip, Module: "m.test/m", Version: "v1.2.4", Outcome: OutcomeServed},
		// bob pulled two affected versions with two teams and nothing since.
		{Time: at(1), Subject: "bob", Teams: []string{"web"}, Action: ActionZip, Module: "m.test/m", Version: "v1.0.0", Outcome: OutcomeServed},
		{Time: at(2), Subject: "bob", Teams: []string{"web", "infra"}, Action: ActionZip, Module: "m.test/m", Version: "v1.2.0", Outcome: OutcomeServed},
		// Reading an affected version's go.mod (module graph, retractions) is not a pull of its code.
		{Time: at(6), Subject: "ivan", Teams: []string{"web"}, Action: ActionMod, Module: "m.test/m", Version: "v1.0.0", Outcome: OutcomeServed},
		{Time: at(6), Subject: "ivan", Teams: []string{"web"}, Action: ActionInfo, Module: "m.test/m", Version: "v1.0.0", Outcome: OutcomeServed},
		// carol pulled the fix before the affected version: still exposed.
		{Time: at(1), Subject: "carol", Teams: []string{"infra"}, Action: ActionZip, Module: "m.test/m", Version: "v1.3.0", Outcome: OutcomeServed},
		{Time: at(3), Subject: "carol", Teams: []string{"infra"}, Action: ActionZip, Module: "m.test/m", Version: "v1.1.0", Outcome: OutcomeServed},
		// Not pulls of an affected version: denied, a list, an unaffected version, another module.
		{Time: at(1), Subject: "dave", Teams: []string{"web"}, Action: ActionZip, Module: "m.test/m", Version: "v1.0.0", Outcome: OutcomeDenied},
		{Time: at(1), Subject: "erin", Action: ActionList, Module: "m.test/m", Outcome: OutcomeServed},
		{Time: at(1), Subject: "frank", Action: ActionZip, Module: "m.test/m", Version: "v1.2.4", Outcome: OutcomeServed},
		{Time: at(1), Subject: "gina", Action: ActionZip, Module: "m.test/other", Version: "v1.0.0", Outcome: OutcomeServed},
		// A second affected module of the same advisory.
		{Time: at(4), Subject: "hugo", Teams: []string{"data"}, Action: ActionZip, Module: "m.test/m/v2", Version: "v2.0.0", Outcome: OutcomeServed},
	}
	for _, ev := range evs {
		if err := w.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	got, err := Affected(context.Background(), pool, []AffectedModule{
		{Path: "m.test/m", Affects: below("v1.2.4")},
		{Path: "m.test/m/v2", Affects: below("v2.0.1")},
	})
	if err != nil {
		t.Fatal(err)
	}
	var lines []string
	for _, e := range got {
		lines = append(lines, strings.Join([]string{e.Subject, strings.Join(e.Teams, ","), e.Module, strings.Join(e.Versions, ","),
			e.FirstPulled.Sub(base).String(), e.LastPulled.Sub(base).String(), e.FixedVersion}, " "))
	}
	want := []string{
		"bob infra,web m.test/m v1.2.0,v1.0.0 1h0m0s 2h0m0s ",
		"carol infra m.test/m v1.1.0 3h0m0s 3h0m0s ",
		"hugo data m.test/m/v2 v2.0.0 4h0m0s 4h0m0s ",
		"alice payments m.test/m v1.2.3 0s 0s v1.2.4",
	}
	if strings.Join(lines, "\n") != strings.Join(want, "\n") {
		t.Errorf("Affected =\n%s\nwant\n%s", strings.Join(lines, "\n"), strings.Join(want, "\n"))
	}

	var buf bytes.Buffer
	if err := WriteExposures(&buf, FormatCSV, got); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 5 || recs[0][0] != "subject" || recs[1][0] != "bob" || recs[1][3] != "v1.2.0;v1.0.0" || recs[4][6] != "v1.2.4" {
		t.Errorf("CSV = %q", recs)
	}
}
