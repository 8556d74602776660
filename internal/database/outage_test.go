package database_test

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// PostgreSQL stopped and started again on the same address: the monitor reports
// and logs both changes, the fill locks fail fast during the outage (no
// connection attempt per object) and work again afterwards, and the pool serves
// queries again without being reopened.
func TestReconnectAfterRestart(t *testing.T) {
	t.Parallel()
	cluster := pgtest.NewCluster(t)
	url := cluster.NewDatabase(t)
	pool := pgtest.Pool(t, url)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	reg := prometheus.NewRegistry()
	mon := database.NewMonitor(pool, database.MonitorConfig{Every: 100 * time.Millisecond, Logger: log, Registerer: reg})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { mon.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	locker, err := database.NewLocker(url, 2, database.WithLockerLogger(log))
	if err != nil {
		t.Fatal(err)
	}
	unlock, err := locker.Lock(ctx, "before")
	if err != nil {
		t.Fatal(err)
	}
	unlock()

	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s; logs:\n%s", what, logs.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	waitUntil("the monitor to see the outage", func() bool { return !mon.Health().Up })
	if got := databaseUp(t, reg); got != 0 {
		t.Errorf("modgate_database_up = %v during the outage, want 0", got)
	}
	if _, err := locker.Lock(ctx, "during"); err == nil {
		t.Fatal("Lock succeeded with PostgreSQL stopped")
	}
	if _, err := locker.Lock(ctx, "during-2"); !errors.Is(err, database.ErrLocksUnavailable) {
		t.Errorf("second Lock during the outage: %v, want ErrLocksUnavailable without a connection attempt", err)
	}

	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	waitUntil("the monitor to see the recovery", func() bool { return mon.Health().Up })
	if got := databaseUp(t, reg); got != 1 {
		t.Errorf("modgate_database_up = %v after recovery, want 1", got)
	}
	waitUntil("the pool to answer again", func() bool {
		var one int
		return pool.QueryRow(ctx, "SELECT 1").Scan(&one) == nil
	})
	waitUntil("fill locks to work again", func() bool {
		unlock, err := locker.Lock(ctx, "after")
		if err == nil {
			unlock()
		}
		return err == nil
	})
	for _, want := range []string{
		"PostgreSQL unreachable",
		"PostgreSQL reachable again",
		"fill locks unavailable",
		"fill locks available again",
	} {
		if !strings.Contains(logs.String(), want) {
			t.Errorf("log lacks %q:\n%s", want, logs.String())
		}
	}
	if n := strings.Count(logs.String(), "fill locks unavailable"); n != 1 {
		t.Errorf("the locks' outage was logged %d times, want once", n)
	}
}

func databaseUp(t *testing.T, reg *prometheus.Registry) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() == "modgate_database_up" {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatal("modgate_database_up not registered")
	return 0
}
