package audit

import (
	"context"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestVerifyNamesTamperedRow(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	w := startWriter(t, pool, WriterConfig{WriterID: "replica-a"})
	for i := range 20 {
		if err := w.Record(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// A second chain that must stay clean whatever happens to the first.
	w2 := startWriter(t, pool, WriterConfig{WriterID: "replica-b"})
	for i := range 5 {
		if err := w2.Record(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w2.Close(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name     string
		tamper   string // SQL run in a transaction that is rolled back afterwards
		wantKind string // "" for a clean report
		wantSeq  int64
	}{
		{"ok/untouched", "", "", 0},
		{"fail/update-reason", `UPDATE audit_events SET reason = 'nothing to see' WHERE chain_id = 'replica-a' AND seq = 5`, ProblemModified, 5},
		{"fail/update-subject", `UPDATE audit_events SET subject = 'someone-else' WHERE chain_id = 'replica-a' AND seq = 12`, ProblemModified, 12},
		{"fail/update-time", `UPDATE audit_events SET time = time - interval '1 day' WHERE chain_id = 'replica-a' AND seq = 9`, ProblemModified, 9},
		{"fail/delete-middle", `DELETE FROM audit_events WHERE chain_id = 'replica-a' AND seq = 7`, ProblemMissing, 8},
		{"fail/delete-first", `DELETE FROM audit_events WHERE chain_id = 'replica-a' AND seq = 1`, ProblemMissing, 2},
		{"fail/reorder", `UPDATE audit_events SET seq = CASE seq WHEN 3 THEN 4 ELSE 3 END WHERE chain_id = 'replica-a' AND seq IN (3, 4)`, ProblemReordered, 3},
		{"fail/insert-forged", `INSERT INTO audit_events (event_id, time, action, outcome, chain_id, seq, prev_hash, hash)
			SELECT gen_random_uuid(), now(), 'zip', 'served', 'replica-a', 21, hash, hash FROM audit_events WHERE chain_id = 'replica-a' AND seq = 20`, ProblemModified, 21},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tx, err := pool.Begin(ctx)
			if err != nil {
				t.Fatal(err)
			}
			defer tx.Rollback(ctx)
			if tt.tamper != "" {
				if _, err := tx.Exec(ctx, tt.tamper); err != nil {
					t.Fatal(err)
				}
			}
			rep, err := Verify(ctx, tx)
			if err != nil {
				t.Fatal(err)
			}
			if len(rep.Chains) != 2 {
				t.Fatalf("Verify saw %d chains, want 2", len(rep.Chains))
			}
			ps := rep.Problems()
			if tt.wantKind == "" {
				if !rep.OK() {
					t.Fatalf("clean table reported %v", ps)
				}
				return
			}
			if len(ps) != 1 {
				t.Fatalf("problems = %v, want exactly one in replica-a", ps)
			}
			p := ps[0]
			if p.ChainID != "replica-a" || p.Kind != tt.wantKind || p.Seq != tt.wantSeq {
				t.Errorf("problem = %v; want %s at seq %d", p, tt.wantKind, tt.wantSeq)
			}
			if p.EventID == "" || p.ID == 0 {
				t.Errorf("problem does not name the row: %+v", p)
			}
		})
	}
}

func TestVerifyAfterRetentionDrop(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	w := startWriter(t, pool, WriterConfig{})
	// Old events (seq 1-5), then recent ones (seq 6-10).
	for i := range 5 {
		ev := testEvent(i)
		ev.Time = time.Now().AddDate(-2, -6, 0)
		if err := w.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 5 {
		if err := w.Record(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	// Make the old rows a partition of their own: maintenance creates partitions
	// only ahead, so create the old month's partition the way it would have been.
	if _, err := pool.Exec(ctx, `
		CREATE TABLE audit_events_old (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS);
		WITH moved AS (DELETE FROM audit_events_default WHERE time < now() - interval '2 years' RETURNING *)
		INSERT INTO audit_events_old SELECT * FROM moved;
		ALTER TABLE audit_events ATTACH PARTITION audit_events_old FOR VALUES FROM ('2000-01-01') TO (date_trunc('month', now() - interval '2 years'));
	`); err != nil {
		t.Fatal(err)
	}
	done, err := MaintainPartitions(ctx, pool, 365*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("maintenance: %v", done)
	var n int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM audit_events").Scan(&n); err != nil || n != 5 {
		t.Fatalf("after retention %d rows (%v), want the 5 recent ones", n, err)
	}
	rep := assertVerifies(t, pool)
	if len(rep.Chains) != 1 || !rep.Chains[0].Anchored || rep.Chains[0].FirstSeq != 6 {
		t.Errorf("report = %+v, want one anchored chain starting at seq 6", rep.Chains)
	}
}
