package audit

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func testLogger(t testing.TB) *slog.Logger {
	return slog.New(slog.NewTextHandler(testWriter{t}, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Log(string(p))
	return len(p), nil
}

// startWriter starts a writer for t, closed (drained) when t ends unless the test
// closed it.
func startWriter(t testing.TB, pool *pgxpool.Pool, cfg WriterConfig) *Writer {
	t.Helper()
	if cfg.WriterID == "" {
		cfg.WriterID = "test-replica"
	}
	if cfg.SpoolDir == "" {
		cfg.SpoolDir = t.TempDir()
	}
	if cfg.MaintenanceInterval == 0 {
		cfg.MaintenanceInterval = -1
	}
	w, err := NewWriter(context.Background(), cfg, pool, testLogger(t), prometheus.NewRegistry())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		w.Close(ctx) // an error means the test closed it already
	})
	return w
}

func testEvent(i int) Event {
	return Event{
		RequestID:       fmt.Sprintf("req-%d", i),
		DecisionID:      fmt.Sprintf("dec-%d", i),
		Subject:         fmt.Sprintf("user%d@example.com", i%7),
		Teams:           []string{fmt.Sprintf("team-%d", i%3), "all"},
		AuthMethod:      "mtls",
		ClientAddr:      "127.0.0.1:5555",
		CertFingerprint: "ab12",
		Action:          ActionZip,
		Module:          fmt.Sprintf("github.com/acme/mod%d", i%5),
		Version:         fmt.Sprintf("v1.%d.0", i%4),
		Outcome:         OutcomeServed,
		Status:          200,
		Reason:          "",
		Source:          "cache",
		Bytes:           int64(1000 + i),
		DurationMS:      1.25,
		UserAgent:       "Go-http-client/1.1",
	}
}

// recordConcurrently records n events from g goroutines and returns the ids of
// those acknowledged.
func recordConcurrently(t testing.TB, w *Writer, n, g int, onAck func(int64)) []string {
	t.Helper()
	var next, acked atomic.Int64
	var mu sync.Mutex
	var ids []string
	var wg sync.WaitGroup
	for range g {
		wg.Go(func() {
			for {
				i := next.Add(1)
				if i > int64(n) {
					return
				}
				ev := testEvent(int(i))
				ev.EventID = newUUIDv7(time.Now())
				if err := w.Record(ev); err != nil {
					continue
				}
				mu.Lock()
				ids = append(ids, ev.EventID)
				mu.Unlock()
				if onAck != nil {
					onAck(acked.Add(1))
				}
			}
		})
	}
	wg.Wait()
	return ids
}

// rowCounts returns the number of rows and of distinct event ids.
func rowCounts(t testing.TB, pool *pgxpool.Pool) (rows, distinct int) {
	t.Helper()
	err := pool.QueryRow(context.Background(),
		"SELECT count(*), count(DISTINCT event_id) FROM audit_events").Scan(&rows, &distinct)
	if err != nil {
		t.Fatal(err)
	}
	return rows, distinct
}

func assertAllPresent(t testing.TB, pool *pgxpool.Pool, ids []string) {
	t.Helper()
	var missing int
	err := pool.QueryRow(context.Background(), `
		SELECT count(*) FROM unnest($1::uuid[]) AS a(id)
		WHERE NOT EXISTS (SELECT 1 FROM audit_events e WHERE e.event_id = a.id)`, ids).Scan(&missing)
	if err != nil {
		t.Fatal(err)
	}
	if missing > 0 {
		t.Errorf("%d of %d acknowledged events are missing from audit_events", missing, len(ids))
	}
}

func assertVerifies(t testing.TB, pool *pgxpool.Pool) Report {
	t.Helper()
	rep, err := Verify(context.Background(), pool)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.OK() {
		t.Errorf("Verify found problems: %v", rep.Problems())
	}
	return rep
}

func TestWriterRoundTrip(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	w := startWriter(t, pool, WriterConfig{})

	const n = 3000
	ids := recordConcurrently(t, w, n, 32, nil)
	if len(ids) != n {
		t.Fatalf("%d of %d events acknowledged", len(ids), n)
	}
	// One event with every field set, to compare field by field.
	want := testEvent(42)
	want.EventID = "0190F3C1-0000-7000-8000-00000000ABCD"
	want.Time = time.Date(2026, 3, 4, 5, 6, 7, 123456789, time.FixedZone("x", 3600))
	want.Reason = "team payments may not pull github.com/x/y"
	want.Teams = []string{"payments", "ops"}
	if err := w.Record(want); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}

	rows, distinct := rowCounts(t, pool)
	if rows != n+1 || distinct != n+1 {
		t.Errorf("audit_events has %d rows (%d distinct), want %d", rows, distinct, n+1)
	}
	assertAllPresent(t, pool, ids)

	got, _, err := Query(context.Background(), pool, Filter{Module: want.Module, Version: want.Version,
		Since: want.Time.Add(-time.Second), Until: want.Time.Add(time.Second)})
	if err != nil || len(got) != 1 {
		t.Fatalf("Query = %d rows, %v; want the one event", len(got), err)
	}
	want.EventID = "0190f3c1-0000-7000-8000-00000000abcd"
	want.Time = time.Date(2026, 3, 4, 4, 6, 7, 123456000, time.UTC)
	want.Replica = "test-replica"
	if !reflect.DeepEqual(got[0].Event, want) {
		t.Errorf("stored event differs:\n got %+v\nwant %+v", got[0].Event, want)
	}
	rep := assertVerifies(t, pool)
	if rep.Rows != n+1 || len(rep.Chains) != 1 || rep.Chains[0].LastSeq != n+1 {
		t.Errorf("Verify report = %+v, want one chain of %d rows", rep, n+1)
	}

	// The spool is compacted to a single head segment after a full drain.
	segs, _ := listSegments(w.cfg.SpoolDir)
	if len(segs) != 1 {
		t.Errorf("spool has %d segments after Close, want 1", len(segs))
	}
}

func TestWriterRejectsInvalidEvents(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	w := startWriter(t, pool, WriterConfig{})
	for name, ev := range map[string]Event{
		"fail/no-action":  {Outcome: OutcomeServed},
		"fail/no-outcome": {Action: ActionZip},
		"fail/bad-id":     {EventID: "not-a-uuid", Action: ActionZip, Outcome: OutcomeServed},
	} {
		if err := w.Record(ev); !errors.Is(err, derrors.InvalidArgument) {
			t.Errorf("%s: Record = %v, want InvalidArgument", name, err)
		}
	}
	// Text PostgreSQL would refuse is cleaned, not allowed to block the spool.
	ev := Event{Action: ActionZip, Outcome: OutcomeServed, Module: "bad\x00name\xff", EventID: newUUIDv7(time.Now())}
	if err := w.Record(ev); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	if rows, _ := rowCounts(t, pool); rows != 1 {
		t.Errorf("%d rows, want 1", rows)
	}
}

func TestWriterSurvivesPostgresOutage(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	pool := pgtest.Pool(t, cluster.NewDatabase(t))
	w := startWriter(t, pool, WriterConfig{})

	const n = 6000
	var stopOnce sync.Once
	stopped := make(chan error, 1)
	ids := recordConcurrently(t, w, n, 32, func(acked int64) {
		if acked == 1500 {
			stopOnce.Do(func() { stopped <- cluster.Stop() })
		}
	})
	if err := <-stopped; err != nil {
		t.Fatal(err)
	}
	if len(ids) != n {
		t.Fatalf("%d of %d events acknowledged during the outage", len(ids), n)
	}
	if err := w.Healthy(); err != nil {
		t.Errorf("Healthy during outage with a working spool = %v, want nil", err)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // drop connections the outage killed, as a server's health check would
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if f := testutil.ToFloat64(w.m.failures.WithLabelValues("postgres")); f == 0 {
		t.Error("no PostgreSQL failure was seen: the outage did not happen during the burst")
	}
	rows, distinct := rowCounts(t, pool)
	if rows != n || distinct != n {
		t.Errorf("after the outage audit_events has %d rows (%d distinct), want %d", rows, distinct, n)
	}
	assertAllPresent(t, pool, ids)
	assertVerifies(t, pool)
}

// The crash test re-executes the test binary as a child that records events until it
// is killed; these variables carry its instructions.
const (
	envCrashChild = "MODGATE_AUDIT_CRASH_CHILD"
	envCrashURL   = "MODGATE_AUDIT_CRASH_URL"
	envCrashSpool = "MODGATE_AUDIT_CRASH_SPOOL"
)

// TestCrashChild is the child half of TestWriterSurvivesKill; run alone it does nothing.
func TestCrashChild(t *testing.T) {
	if os.Getenv(envCrashChild) != "1" {
		return
	}
	ctx := context.Background()
	pool, err := database.Open(ctx, os.Getenv(envCrashURL))
	if err != nil {
		t.Fatal(err)
	}
	w, err := NewWriter(ctx, WriterConfig{WriterID: "crashy", SpoolDir: os.Getenv(envCrashSpool), MaintenanceInterval: -1},
		pool, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		t.Fatal(err)
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for g := range 16 {
		wg.Go(func() {
			for i := 0; ; i++ {
				ev := testEvent(g*1_000_000 + i)
				ev.EventID = newUUIDv7(time.Now())
				if err := w.Record(ev); err != nil {
					continue
				}
				// Only an acknowledged event is reported; the parent holds us to it.
				mu.Lock()
				fmt.Fprintln(out, ev.EventID)
				out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

func TestWriterSurvivesKill(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	url := cluster.NewDatabase(t)
	pool := pgtest.Pool(t, url)
	spool := t.TempDir()

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashChild+"=1", envCrashURL+"="+url, envCrashSpool+"="+spool)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = testWriter{t}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked []string
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if len(sc.Text()) != 36 {
			continue // test framework output
		}
		acked = append(acked, sc.Text())
		switch len(acked) {
		case 2000:
			// PostgreSQL goes away first, so the events acknowledged from here on
			// exist only in the child's spool when it dies.
			if err := cluster.Stop(); err != nil {
				t.Fatal(err)
			}
		case 5000:
			cmd.Process.Signal(syscall.SIGKILL)
		}
	}
	err = cmd.Wait()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
		t.Fatalf("child ended with %v, want killed (did it fail early?)", err)
	}
	if len(acked) < 5000 {
		t.Fatalf("child acknowledged only %d events", len(acked))
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // drop connections the outage killed, as a server's health check would
	before, _ := rowCounts(t, pool)
	t.Logf("child acknowledged %d events before SIGKILL; %d were in PostgreSQL, the rest only in its spool", len(acked), before)
	if before >= len(acked) {
		t.Fatalf("every acknowledged event reached PostgreSQL before the kill; the spool replay is not exercised")
	}

	// A new writer on the same spool replays it, and continues the chain.
	w := startWriter(t, pool, WriterConfig{WriterID: "crashy", SpoolDir: spool})
	more := recordConcurrently(t, w, 100, 4, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	assertAllPresent(t, pool, acked)
	assertAllPresent(t, pool, more)
	rows, distinct := rowCounts(t, pool)
	if rows != distinct {
		t.Errorf("%d rows but %d distinct event ids: replay duplicated events", rows, distinct)
	}
	if rows < len(acked)+len(more) {
		t.Errorf("%d rows, want at least %d", rows, len(acked)+len(more))
	}
	rep := assertVerifies(t, pool)
	if len(rep.Chains) != 1 || rep.Chains[0].ChainID != "crashy" {
		t.Errorf("chains after restart = %+v, want the one chain continued", rep.Chains)
	}
}

func TestWriterFailsClosed(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	pool := pgtest.Pool(t, cluster.NewDatabase(t))
	spool := filepath.Join(t.TempDir(), "spool")
	// Tiny segments: every commit starts a new segment file, so a broken directory
	// shows at once (root ignores permission bits, so the test replaces the
	// directory with a file instead of chmod-ing it).
	w := startWriter(t, pool, WriterConfig{SpoolDir: spool, SegmentBytes: 1})
	record := func() error { return w.Record(testEvent(1)) }

	if err := record(); err != nil {
		t.Fatalf("healthy Record = %v", err)
	}
	waitFor(t, "spool shipped", func() bool { return w.unshipped.Load() == 0 })

	breakDir := func() {
		if err := os.RemoveAll(spool); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(spool, []byte("not a directory"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	breakDir()
	// Spool broken, PostgreSQL up: events go straight to PostgreSQL.
	if err := record(); err != nil {
		t.Fatalf("Record with a broken spool but PostgreSQL up = %v, want nil", err)
	}
	if err := w.Healthy(); err != nil {
		t.Errorf("Healthy with PostgreSQL up = %v", err)
	}

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := record(); !errors.Is(err, derrors.Unavailable) {
		t.Fatalf("Record with no spool and no PostgreSQL = %v, want Unavailable", err)
	}
	if err := w.Healthy(); !errors.Is(err, derrors.Unavailable) {
		t.Errorf("Healthy with no spool and no PostgreSQL = %v, want Unavailable", err)
	}
	if got := derrors.Status(w.Healthy()); got != 503 {
		t.Errorf("status for an unhealthy audit log = %d, want 503", got)
	}

	// Recovery: the spool comes back first, then PostgreSQL.
	os.Remove(spool)
	if err := os.MkdirAll(spool, 0o700); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "spool writable again", func() bool { return record() == nil })
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool.Reset() // drop connections the outage killed, as a server's health check would
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	rows, distinct := rowCounts(t, pool)
	if rows != 3 || distinct != 3 {
		t.Errorf("%d rows (%d distinct), want the 3 acknowledged events once each", rows, distinct)
	}
	// The refused event left no hole in the chain.
	assertVerifies(t, pool)
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Rows written straight to PostgreSQL while the spool was broken put the table ahead
// of the spool; a restart continues the chain from the table instead of forking it.
func TestWriterResumesChainPastSpool(t *testing.T) {
	t.Parallel()
	pool, _ := pgtest.NewPool(t)
	spool := filepath.Join(t.TempDir(), "spool")
	backup := t.TempDir()
	w := startWriter(t, pool, WriterConfig{SpoolDir: spool, SegmentBytes: 1})
	for i := range 3 {
		if err := w.Record(testEvent(i)); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "spool shipped", func() bool { return w.unshipped.Load() == 0 })
	segs, _ := listSegments(spool)
	for _, id := range segs {
		data, err := os.ReadFile(segmentName(spool, id))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(segmentName(backup, id), data, 0o600)
	}
	os.RemoveAll(spool)
	os.WriteFile(spool, nil, 0o600)
	for i := range 2 {
		if err := w.Record(testEvent(i)); err != nil {
			t.Fatal(err) // straight to PostgreSQL
		}
	}
	if err := w.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	os.Remove(spool)
	if err := os.Rename(backup, spool); err != nil {
		t.Fatal(err)
	}

	w2 := startWriter(t, pool, WriterConfig{SpoolDir: spool})
	if err := w2.Record(testEvent(9)); err != nil {
		t.Fatal(err)
	}
	if err := w2.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	rep := assertVerifies(t, pool)
	if len(rep.Chains) != 1 || rep.Chains[0].LastSeq != 6 || rep.Rows != 6 {
		t.Errorf("chains = %+v, want one chain of 6 rows", rep.Chains)
	}
}

// A full spool (a long outage) sends events straight to PostgreSQL, and fails closed
// when PostgreSQL is down too.
func TestWriterSpoolFull(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	pool := pgtest.Pool(t, cluster.NewDatabase(t))
	w := startWriter(t, pool, WriterConfig{MaxSpoolBytes: 1}) // the head entry alone fills it
	for i := range 3 {
		if err := w.Record(testEvent(i)); err != nil {
			t.Fatalf("Record with a full spool and PostgreSQL up = %v", err)
		}
	}
	if rows, _ := rowCounts(t, pool); rows != 3 {
		t.Errorf("%d rows, want 3 written straight to PostgreSQL", rows)
	}
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	if err := w.Record(testEvent(4)); !errors.Is(err, derrors.Unavailable) {
		t.Errorf("Record with a full spool and PostgreSQL down = %v, want Unavailable", err)
	}
	if err := w.Healthy(); !errors.Is(err, derrors.Unavailable) {
		t.Errorf("Healthy = %v, want Unavailable", err)
	}
}

// Commits spaced a few milliseconds apart gather into a few inserts with the
// ship delay, however slow the machine (at most one insert per delay elapsed,
// plus the first and the last). The control: without the delay, a commit that
// reaches the shipper alone (the test waits for each row) is shipped at once.
func TestShipDelayGathersCommits(t *testing.T) {
	t.Parallel()
	const events = 60
	for _, tc := range []struct {
		name  string
		delay time.Duration
	}{
		{"delayed", 400 * time.Millisecond},
		{"at-once", -1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			pool, _ := pgtest.NewPool(t)
			w := startWriter(t, pool, WriterConfig{ShipDelay: tc.delay})
			var ids []string
			start := time.Now()
			for i := range events {
				ev := testEvent(i)
				ev.EventID = newUUIDv7(time.Now())
				if err := w.Record(ev); err != nil { // one commit each: Record waits for it
					t.Fatal(err)
				}
				ids = append(ids, ev.EventID)
				if tc.delay < 0 {
					waitFor(t, "the event in PostgreSQL", func() bool {
						rows, _ := rowCounts(t, pool)
						return rows == i+1
					})
				} else {
					time.Sleep(2 * time.Millisecond)
				}
			}
			elapsed := time.Since(start)
			waitFor(t, "every event in PostgreSQL", func() bool {
				rows, _ := rowCounts(t, pool)
				return rows == events
			})
			assertAllPresent(t, pool, ids)
			inserts := int(histogramCount(t, w.m.writeLatency))
			t.Logf("%d events over %v shipped in %d inserts", events, elapsed, inserts)
			if tc.delay < 0 {
				if inserts < events {
					t.Errorf("without the delay, %d events shipped one at a time took %d inserts, want %d", events, inserts, events)
				}
				return
			}
			if most := int(elapsed/tc.delay) + 2; inserts > most || inserts > events/4 {
				t.Errorf("%d events over %v shipped in %d inserts, want at most %d (and under %d)", events, elapsed, inserts, most, events/4)
			}
		})
	}
}

func histogramCount(t *testing.T, h prometheus.Histogram) uint64 {
	t.Helper()
	var m dto.Metric
	if err := h.Write(&m); err != nil {
		t.Fatal(err)
	}
	return m.GetHistogram().GetSampleCount()
}
