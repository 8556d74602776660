package e2e

import (
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/pgtest"
	"github.com/modgate/modgate/internal/proxytest"
)

// PostgreSQL down, requests served, then SIGKILL: every event was fsync'd to the
// spool before its response completed, so a restart over the same spool, with
// PostgreSQL back, ships them all, exactly once.
func TestKilledAfterServingLosesNoAuditEvent(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "modgate.yaml")
	writeFile(t, cfgFile, []byte(fmt.Sprintf("database:\n  url: %q\naudit:\n  spool_dir: %q\nsumdb:\n  verify: false\n", dbURL, filepath.Join(dir, "spool"))))
	args := []string{"--config", cfgFile, "--cache-dir", filepath.Join(dir, "cache"), "--upstream", upstream.URL, "--anonymous"}

	p := startModgate(t, args...)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	const n = 40
	url := p.URL + proxytest.InfoPath(proxytest.HelloPath, "v1.0.0")
	for i := range n {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	p.Kill()
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, dbURL)
	shippedBeforeKill := countRows(t, pool, "action = 'info'")

	startModgate(t, args...)
	deadline := time.Now().Add(30 * time.Second)
	for countRows(t, pool, "action = 'info'") < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := countRows(t, pool, "action = 'info'")
	t.Logf("shipped before SIGKILL: %d of %d; after restart: %d", shippedBeforeKill, n, got)
	if got != n {
		t.Errorf("audit rows after SIGKILL and restart = %d, want %d", got, n)
	}
	if dups := countRows(t, pool, "event_id IN (SELECT event_id FROM audit_events GROUP BY event_id HAVING count(*) > 1)"); dups != 0 {
		t.Errorf("%d duplicated rows", dups)
	}
}
