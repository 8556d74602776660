package database_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func newLocker(t *testing.T, url string) *database.Locker {
	t.Helper()
	l, err := database.NewLocker(url, 4)
	if err != nil {
		t.Fatal(err)
	}
	return l
}

// lockAsync starts Lock in the background and returns a channel that yields its
// unlock function once the lock is held.
func lockAsync(t *testing.T, l *database.Locker, ctx context.Context, name string) <-chan func() {
	got := make(chan func(), 1)
	go func() {
		unlock, err := l.Lock(ctx, name)
		if err != nil {
			if !errors.Is(err, context.Canceled) {
				t.Errorf("Lock(%q): %v", name, err)
			}
			close(got)
			return
		}
		got <- unlock
	}()
	return got
}

func assertWaiting(t *testing.T, got <-chan func()) {
	t.Helper()
	select {
	case <-got:
		t.Fatal("second locker acquired a lock that is held")
	case <-time.After(300 * time.Millisecond):
	}
}

func assertAcquired(t *testing.T, got <-chan func()) func() {
	t.Helper()
	select {
	case unlock, ok := <-got:
		if !ok {
			t.Fatal("Lock failed")
		}
		return unlock
	case <-time.After(10 * time.Second):
		t.Fatal("lock not acquired after the holder released it")
		return nil
	}
}

func TestLockerExcludesAcrossProcesses(t *testing.T) {
	t.Parallel()
	url := pgtest.NewDatabase(t)
	a, b := newLocker(t, url), newLocker(t, url) // as two replicas would
	ctx := context.Background()

	t.Run("ok/waits-for-unlock", func(t *testing.T) {
		unlock, err := a.Lock(ctx, "mod/x.zip")
		if err != nil {
			t.Fatal(err)
		}
		other, err := b.Lock(ctx, "mod/y.zip") // another key is independent
		if err != nil {
			t.Fatal(err)
		}
		other()
		got := lockAsync(t, b, ctx, "mod/x.zip")
		assertWaiting(t, got)
		unlock()
		assertAcquired(t, got)()
	})

	t.Run("ok/cancelled-wait", func(t *testing.T) {
		unlock, err := a.Lock(ctx, "mod/c.zip")
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		cctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
		defer cancel()
		if _, err := b.Lock(cctx, "mod/c.zip"); err == nil {
			t.Fatal("Lock succeeded on a held lock")
		}
	})

	t.Run("ok/holder-dies", func(t *testing.T) {
		// The holder's session ending (a replica killed with SIGKILL) releases the lock.
		sep := "?"
		if strings.Contains(url, "?") {
			sep = "&"
		}
		dying := newLocker(t, url+sep+"application_name=modgate-dying")
		unlock, err := dying.Lock(ctx, "mod/d.zip")
		if err != nil {
			t.Fatal(err)
		}
		defer unlock()
		got := lockAsync(t, b, ctx, "mod/d.zip")
		assertWaiting(t, got)
		admin := pgtest.Pool(t, url)
		var n int
		if err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE application_name = 'modgate-dying'").Scan(&n); err != nil || n != 1 {
			t.Fatalf("terminating the holder: %d sessions, %v", n, err)
		}
		assertAcquired(t, got)()
	})
}
