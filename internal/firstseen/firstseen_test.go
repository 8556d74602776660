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
