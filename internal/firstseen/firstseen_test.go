package firstseen_test

import (
	"bytes"
	"context"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/firstseen"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestFirstSeen(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	past := time.Now().Add(-400 * 24 * time.Hour).UTC().Truncate(time.Second)
	if _, err := pool.Exec(ctx, `INSERT INTO version_first_seen (module, version, first_seen) VALUES ('mod.test/old', 'v1.0.0', $1)`, past); err != nil {
		t.Fatal(err)
	}
	s := firstseen.New(pool, 2, nil)

	before := time.Now().Add(-time.Minute)
	first, ok := s.FirstSeen(ctx, "mod.test/new", "v1.0.0")
	if !ok || first.Before(before) || first.After(time.Now().Add(time.Minute)) {
		t.Fatalf("first sight of a new version = %v, %v; want about now", first, ok)
	}
	// Another replica (a second store on the same database) agrees, and the
	// time does not move.
	other := firstseen.New(pool, 2, nil)
	time.Sleep(10 * time.Millisecond)
	if again, ok := other.FirstSeen(ctx, "mod.test/new", "v1.0.0"); !ok || !again.Equal(first) {
		t.Errorf("second sight = %v, %v; want %v", again, ok, first)
	}
	if got, ok := s.FirstSeen(ctx, "mod.test/old", "v1.0.0"); !ok || !got.Equal(past) {
		t.Errorf("recorded version = %v, %v; want %v", got, ok, past)
	}
	// Beyond the cache's bound the answer still comes from the database.
	for _, v := range []string{"v1.0.1", "v1.0.2", "v1.0.3"} {
		if _, ok := s.FirstSeen(ctx, "mod.test/new", v); !ok {
			t.Fatalf("FirstSeen %s failed", v)
		}
	}
	if got, ok := s.FirstSeen(ctx, "mod.test/old", "v1.0.0"); !ok || !got.Equal(past) {
		t.Errorf("recorded version after evictions = %v, %v; want %v", got, ok, past)
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM version_first_seen`).Scan(&n); err != nil || n != 5 {
		t.Errorf("rows = %d (%v), want 5", n, err)
	}
}

// An unreachable database is no failure: the answer is "unknown", logged once.
func TestFirstSeenDatabaseDown(t *testing.T) {
	pool, _ := pgtest.NewPool(t)
	var buf bytes.Buffer
	s := firstseen.New(pool, 0, slog.New(slog.NewTextHandler(&buf, nil)))
	pool.Close()
	for range 3 {
		if got, ok := s.FirstSeen(context.Background(), "mod.test/x", "v1.0.0"); ok || !got.IsZero() {
			t.Fatalf("FirstSeen with the database down = %v, %v; want zero, false", got, ok)
		}
	}
	if n := strings.Count(buf.String(), "database unreachable"); n != 1 {
		t.Errorf("logged %d times, want once:\n%s", n, buf.String())
	}
}

// Batch records and answers a whole list in one statement, agrees with
// FirstSeen, handles duplicates, and sends nothing the cache holds.
func TestBatch(t *testing.T) {
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)
	past := time.Now().Add(-400 * 24 * time.Hour).UTC().Truncate(time.Second)
	if _, err := pool.Exec(ctx, `INSERT INTO version_first_seen (module, version, first_seen) VALUES ('mod.test/m', 'v1.0.0', $1), ('Mod.test/m', 'v1.0.1', $1)`, past); err != nil {
		t.Fatal(err)
	}
	s := firstseen.New(pool, 100, nil)
	before := time.Now().Add(-time.Minute)
	versions := []string{"v1.0.0", "v1.0.1", "v1.0.2", "v1.0.2", ""}
	times, err := s.Batch(ctx, "mod.test/m", versions)
	if err != nil || len(times) != len(versions) {
		t.Fatalf("Batch = %v, %v", times, err)
	}
	if !times[0].Equal(past) {
		t.Errorf("recorded v1.0.0 = %v, want %v", times[0], past)
	}
	// The module path is case-sensitive, as in FirstSeen: Mod.test/m is
	// another module.
	for i := 1; i <= 3; i++ {
		if times[i].Before(before) || times[i].After(time.Now().Add(time.Minute)) {
			t.Errorf("new %s = %v, want about now", versions[i], times[i])
		}
	}
	if !times[2].Equal(times[3]) {
		t.Errorf("duplicate v1.0.2 = %v and %v", times[2], times[3])
	}
	if !times[4].IsZero() {
		t.Errorf(`"" = %v, want zero`, times[4])
	}
	// A single-version lookup in another replica agrees with the list's.
	other := firstseen.New(pool, 100, nil)
	if got, ok := other.FirstSeen(ctx, "mod.test/m", "v1.0.2"); !ok || !got.Equal(times[2]) {
		t.Errorf("FirstSeen after Batch = %v, %v; want %v", got, ok, times[2])
	}
	var n int
	if err := pool.QueryRow(ctx, `SELECT count(*) FROM version_first_seen WHERE module = 'mod.test/m'`).Scan(&n); err != nil || n != 3 {
		t.Errorf("rows = %d (%v), want 3", n, err)
	}
	// Everything is cached now: the list is answered with the database gone,
	// and so is a single version.
	pool.Close()
	again, err := s.Batch(ctx, "mod.test/m", versions[:4])
	if err != nil {
		t.Fatalf("Batch of cached versions: %v", err)
	}
	for i := range again {
		if !again[i].Equal(times[i]) {
			t.Errorf("cached %s = %v, want %v", versions[i], again[i], times[i])
		}
	}
	if got, ok := s.FirstSeen(ctx, "mod.test/m", "v1.0.1"); !ok || !got.Equal(times[1]) {
		t.Errorf("FirstSeen of a listed version = %v, %v; want %v from the cache", got, ok, times[1])
	}
	// With the database down, what the cache holds is answered, the rest is
	// zero, and the error says so.
	mixed, err := s.Batch(ctx, "mod.test/m", []string{"v1.0.0", "v9.9.9"})
	if err == nil || !mixed[0].Equal(past) || !mixed[1].IsZero() {
		t.Errorf("Batch with the database down = %v, %v; want [%v, zero] and an error", mixed, err, past)
	}
}
