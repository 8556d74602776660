package audit

import (
	"bytes"
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

// seedQueryRows records a known set of events, one hour apart, newest last.
func seedQueryRows(t *testing.T) (DB, time.Time) {
	t.Helper()
	pool, _ := pgtest.NewPool(t)
	w := startWriter(t, pool, WriterConfig{})
	base := time.Now().Add(-100 * time.Hour).Truncate(time.Hour)
	evs := []Event{
		{Subject: "alice", Teams: []string{"payments"}, Action: ActionZip, Module: "github.com/acme/pay", Version: "v1.0.0", Outcome: OutcomeServed},
		{Subject: "alice", Teams: []string{"payments"}, Action: ActionMod, Module: "github.com/acme/pay", Version: "v1.0.0", Outcome: OutcomeServed},
		{Subject: "bob", Teams: []string{"search", "infra"}, Action: ActionZip, Module: "github.com/acme/pay", Version: "v1.1.0", Outcome: OutcomeServed},
		{Subject: "bob", Teams: []string{"search", "infra"}, Action: ActionZip, Module: "github.com/evil/pkg", Version: "v0.1.0", Outcome: OutcomeDenied, Reason: "blocked"},
		{Subject: "carol", Teams: []string{"infra"}, Action: ActionList, Module: "github.com/acme/payroll", Outcome: OutcomeServed},
		{Subject: "carol", Teams: []string{"infra"}, Action: ActionPublish, Module: "corp.example/lib", Version: "v2.0.0", Outcome: OutcomeServed},
		{Subject: "dave", Action: ActionZip, Module: "github.com/acme/pay", Version: "v1.0.0", Outcome: OutcomeUnauthenticated},
		{Subject: "erin", Teams: []string{"payments"}, Action: ActionInfo, Module: "github.com/acme_x/pay", Version: "v1.0.0", Outcome: OutcomeServed},
	}
	for i, ev := range evs {
		ev.Time = base.Add(time.Duration(i) * time.Hour)
		if err := w.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	// Many rows with one timestamp, to page through ties.
	tie := base.Add(50 * time.Hour)
	for range 25 {
		if err := w.Record(Event{Time: tie, Subject: "bulk", Action: ActionInfo, Module: "github.com/bulk/m", Version: "v1.0.0", Outcome: OutcomeServed}); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	return pool, base
}

func TestQueryFilters(t *testing.T) {
	t.Parallel()
	db, base := seedQueryRows(t)
	tests := []struct {
		name         string
		f            Filter
		wantSubjects []string // newest first
	}{
		{"module/exact", Filter{Module: "github.com/acme/pay"}, []string{"dave", "bob", "alice", "alice"}},
		{"module/glob", Filter{Module: "github.com/acme/*"}, []string{"dave", "carol", "bob", "alice", "alice"}},
		{"module/glob-underscore-is-literal", Filter{Module: "github.com/acme_*"}, []string{"erin"}},
		{"module+version", Filter{Module: "github.com/acme/pay", Version: "v1.1.0"}, []string{"bob"}},
		{"subject", Filter{Subject: "carol"}, []string{"carol", "carol"}},
		{"team", Filter{Team: "infra"}, []string{"carol", "carol", "bob", "bob"}},
		{"action", Filter{Actions: []Action{ActionPublish}}, []string{"carol"}},
		{"outcome", Filter{Outcomes: []Outcome{OutcomeDenied, OutcomeUnauthenticated}}, []string{"dave", "bob"}},
		{"time-range", Filter{Since: base.Add(2 * time.Hour), Until: base.Add(5 * time.Hour)}, []string{"carol", "bob", "bob"}},
		{"who-pulled", WhoPulled("github.com/acme/pay", "v1.0.0"), []string{"alice", "alice"}},
		{"team-pulls", TeamPulls("payments", base), []string{"erin", "alice", "alice"}},
		{"team-pulls/since-excludes", TeamPulls("payments", base.Add(time.Hour+time.Minute)), []string{"erin"}},
		{"none", Filter{Subject: "mallory"}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			rows, next, err := Query(context.Background(), db, tt.f)
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, r := range rows {
				got = append(got, r.Subject)
			}
			if strings.Join(got, ",") != strings.Join(tt.wantSubjects, ",") {
				t.Errorf("subjects = %v, want %v", got, tt.wantSubjects)
			}
			if next != "" {
				t.Errorf("next cursor %q on a single page", next)
			}
		})
	}
}

func TestQueryKeysetPaging(t *testing.T) {
	t.Parallel()
	db, _ := seedQueryRows(t)
	ctx := context.Background()
	all, _, err := Query(ctx, db, Filter{Limit: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if len(all) != 33 {
		t.Fatalf("%d rows, want 33", len(all))
	}
	var paged []Row
	cursor := ""
	pages := 0
	for {
		rows, next, err := Query(ctx, db, Filter{Limit: 7, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		pages++
		paged = append(paged, rows...)
		if next == "" {
			break
		}
		if pages > 10 {
			t.Fatal("paging does not end")
		}
		cursor = next
	}
	if pages != 5 || len(paged) != len(all) {
		t.Fatalf("%d pages, %d rows; want 5 pages, %d rows", pages, len(paged), len(all))
	}
	seen := map[int64]bool{}
	for i, r := range paged {
		if seen[r.ID] {
			t.Fatalf("row %d returned twice", r.ID)
		}
		seen[r.ID] = true
		if r.ID != all[i].ID {
			t.Fatalf("paged row %d is id %d, unpaged is %d", i, r.ID, all[i].ID)
		}
		if i > 0 && (r.Time.After(paged[i-1].Time) || r.Time.Equal(paged[i-1].Time) && r.ID > paged[i-1].ID) {
			t.Fatalf("rows not newest first at %d", i)
		}
	}

	for name, f := range map[string]Filter{
		"fail/bad-cursor": {Cursor: "!!!"},
		"fail/limit":      {Limit: MaxLimit + 1},
	} {
		if _, _, err := Query(ctx, db, f); !errors.Is(err, derrors.InvalidArgument) {
			t.Errorf("%s: err = %v, want InvalidArgument", name, err)
		}
	}
}

func TestWriteFormats(t *testing.T) {
	t.Parallel()
	db, _ := seedQueryRows(t)
	rows, _, err := Query(context.Background(), db, Filter{Subject: "bob"})
	if err != nil || len(rows) != 2 {
		t.Fatalf("Query = %d rows, %v", len(rows), err)
	}
	tests := []struct {
		format string
		check  func(t *testing.T, out string)
	}{
		{FormatTable, func(t *testing.T, out string) {
			lines := strings.Split(strings.TrimSpace(out), "\n")
			if len(lines) != 3 || !strings.HasPrefix(lines[0], "TIME") || !strings.Contains(out, "github.com/evil/pkg") {
				t.Errorf("table:\n%s", out)
			}
		}},
		{FormatJSON, func(t *testing.T, out string) {
			dec := json.NewDecoder(strings.NewReader(out))
			n := 0
			for dec.More() {
				var r Row
				if err := dec.Decode(&r); err != nil {
					t.Fatal(err)
				}
				if r.Subject != "bob" || len(r.Hash) != 32 {
					t.Errorf("decoded %+v", r)
				}
				n++
			}
			if n != 2 {
				t.Errorf("%d JSON rows, want 2", n)
			}
		}},
		{FormatCSV, func(t *testing.T, out string) {
			recs, err := csv.NewReader(strings.NewReader(out)).ReadAll()
			if err != nil {
				t.Fatal(err)
			}
			if len(recs) != 3 || recs[0][0] != "id" || recs[1][6] != "search;infra" {
				t.Errorf("csv = %q", recs)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.format, func(t *testing.T) {
			var buf bytes.Buffer
			if err := Write(&buf, tt.format, rows, true); err != nil {
				t.Fatal(err)
			}
			tt.check(t, buf.String())
		})
	}
	if err := Write(&bytes.Buffer{}, "xml", rows, true); err == nil {
		t.Error("unknown format accepted")
	}
}

// Querying without the database is a 503 that says recording goes on.
func TestQueryDatabaseUnreachable(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	pool.Close()
	_, _, err := Query(context.Background(), pool, Filter{})
	want := "cannot query the audit trail now (events are still being recorded): modgate's database is unreachable; try again when it is back"
	if !errors.Is(err, derrors.Unavailable) || derrors.PublicMessage(err) != want {
		t.Errorf("err = %v (%q), want Unavailable %q", err, derrors.PublicMessage(err), want)
	}
}
