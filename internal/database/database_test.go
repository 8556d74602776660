package database_test

import (
	"context"
	"net/http"
	"slices"
	"testing"
	"testing/fstest"
	"time"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestMigrateAppliesOnceAndFillsGaps(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, _ := pgtest.NewPool(t)

	// The template database is already migrated: nothing left to apply.
	applied, err := database.Migrate(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	if len(applied) != 0 {
		t.Errorf("second Migrate applied %v, want nothing", applied)
	}
	st, err := database.Status(ctx, pool)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range st {
		if m.AppliedAt == nil {
			t.Errorf("%s pending after Migrate", m.Name)
		}
	}

	// A file numbered below one already applied (merged from another branch) is applied later.
	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	fs1 := fstest.MapFS{
		"9001_a.sql": {Data: []byte("CREATE TABLE gap_a (x int);")},
		"9003_c.sql": {Data: []byte("CREATE TABLE gap_c (x int);")},
	}
	if got, err := database.MigrateFS(ctx, conn.Conn(), fs1); err != nil || !slices.Equal(got, []string{"9001_a.sql", "9003_c.sql"}) {
		t.Fatalf("first run applied %v, %v", got, err)
	}
	fs1["9002_b.sql"] = &fstest.MapFile{Data: []byte("CREATE TABLE gap_b (x int);")}
	if got, err := database.MigrateFS(ctx, conn.Conn(), fs1); err != nil || !slices.Equal(got, []string{"9002_b.sql"}) {
		t.Fatalf("second run applied %v, %v; want [9002_b.sql]", got, err)
	}

	// A failing migration is rolled back and not recorded.
	bad := fstest.MapFS{"9004_bad.sql": {Data: []byte("CREATE TABLE gap_d (x int); SELECT no_such_function();")}}
	if _, err := database.MigrateFS(ctx, conn.Conn(), bad); err == nil {
		t.Fatal("bad migration succeeded")
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_tables WHERE tablename = 'gap_d'").Scan(&n); err != nil || n != 0 {
		t.Errorf("gap_d exists after failed migration (n=%d, err=%v)", n, err)
	}
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM schema_migrations WHERE version = 9004").Scan(&n); err != nil || n != 0 {
		t.Errorf("failed migration recorded (n=%d, err=%v)", n, err)
	}
}

func TestLoadRejectsDuplicateNumbers(t *testing.T) {
	t.Parallel()
	_, err := database.LoadFS(fstest.MapFS{
		"0005_a.sql": {Data: []byte("SELECT 1")},
		"005_b.sql":  {Data: []byte("SELECT 1")},
	})
	if err == nil {
		t.Fatal("duplicate numbers accepted")
	}
}

func TestEmbeddedMigrationsLoad(t *testing.T) {
	t.Parallel()
	ms, err := database.Load()
	if err != nil {
		t.Fatal(err)
	}
	if len(ms) == 0 || ms[0].Version != 1 {
		t.Fatalf("database.Load() = %d migrations, want 0001 first", len(ms))
	}
}

// A pool opened with a statement timeout cancels a slow statement with an error
// TimedOut recognises and MarkUnavailable turns into a one-line 503; migrations
// on the same pool run without the timeout, which the connection has again
// afterwards.
func TestStatementTimeout(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	pool, err := database.Open(ctx, pgtest.NewDatabase(t), database.WithStatementTimeout(200*time.Millisecond), database.WithMaxConns(1))
	if err != nil {
		t.Fatal(err)
	}
	defer pool.Close()
	_, err = pool.Exec(ctx, "SELECT pg_sleep(2)")
	if !database.TimedOut(err) || !database.Unreachable(err) {
		t.Fatalf("slow statement: %v; want a statement timeout", err)
	}
	database.MarkUnavailable(&err, "cannot publish %s@%s now (nothing was stored)", "corp.test/m", "v1.0.0")
	want := "cannot publish corp.test/m@v1.0.0 now (nothing was stored): modgate's database did not answer in time; try again"
	if derrors.Status(err) != http.StatusServiceUnavailable || derrors.PublicMessage(err) != want {
		t.Errorf("timed out: %d %q, want 503 %q", derrors.Status(err), derrors.PublicMessage(err), want)
	}

	conn, err := pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	slow := fstest.MapFS{"9101_slow.sql": {Data: []byte("SELECT pg_sleep(0.5); CREATE TABLE slow_a (x int);")}}
	if got, err := database.MigrateFS(ctx, conn.Conn(), slow); err != nil || len(got) != 1 {
		t.Fatalf("slow migration on a pool with a statement timeout: %v, %v", got, err)
	}
	var setting string
	if err := conn.QueryRow(ctx, "SHOW statement_timeout").Scan(&setting); err != nil || setting != "200ms" {
		t.Errorf("statement_timeout after migrating = %q (%v), want 200ms", setting, err)
	}
}
