package e2e

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// /readyz fails only where serving is impossible. Two replicas whose audit
// spool is full (max_spool_bytes: 1, so every event must go straight to
// PostgreSQL) lose PostgreSQL: with audit.require nothing can be recorded, so
// requests are refused and /readyz is 503 naming the audit trail; without it
// the replica serves and /readyz stays 200, reporting the audit trail as
// degraded. Both were 200 while PostgreSQL was up.
func TestReadyzAuditRequireWithoutSpool(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	m := proxytest.StandardModules()[0]
	info := "/" + m.Path + "/@v/" + m.Version + ".info"

	urls := map[bool]string{}
	for _, require := range []bool{true, false} {
		cfg := config.Defaults()
		cfg.Cache.Dir = t.TempDir()
		cfg.Upstream.Proxies = upstream.URL
		cfg.Auth.Anonymous = true
		cfg.SumDB.Names = []string{testSumDB}
		cfg.SumDB.Verify = false
		cfg.Database.URL = dbURL
		cfg.Replica = fmt.Sprintf("require-%v", require)
		cfg.Audit.Require = require
		cfg.Audit.MaxSpoolBytes = 1 // the spool is full from the start
		cfg.Policy.Dir = ""         // every caller may pull: the test is about recording
		urls[require] = startApp(t, cfg)
	}
	for require, url := range urls {
		if res := httpGet(url+info, ""); res.status != http.StatusOK {
			t.Fatalf("audit.require=%v, PostgreSQL up: %s = %d %s", require, info, res.status, res.body)
		}
		if res := httpGet(url+"/readyz", ""); res.status != http.StatusOK {
			t.Errorf("audit.require=%v, PostgreSQL up, spool full: /readyz = %d %s, want 200", require, res.status, res.body)
		}
	}

	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	// The first request finds that nothing can record it; from then on the
	// replica with audit.require is out of service.
	httpGet(urls[true]+info, "")
	waitFor(t, 30*time.Second, "/readyz to fail with audit.require", func() bool {
		res := httpGet(urls[true]+"/readyz", "")
		return res.status == http.StatusServiceUnavailable && strings.Contains(string(res.body), "audit: audit log unavailable")
	})
	if res := httpGet(urls[true]+info, ""); res.status != http.StatusServiceUnavailable {
		t.Errorf("audit.require, no spool, no PostgreSQL: %s = %d %s, want 503", info, res.status, res.body)
	}
	if res := httpGet(urls[false]+info, ""); res.status != http.StatusOK {
		t.Errorf("audit.require off, no spool, no PostgreSQL: %s = %d %s, want 200 (served unrecorded)", info, res.status, res.body)
	}
	waitFor(t, 30*time.Second, "/readyz to report the audit trail degraded without audit.require", func() bool {
		res := httpGet(urls[false]+"/readyz", "")
		return res.status == http.StatusOK && strings.Contains(string(res.body), "audit: degraded")
	})
	for i := 0; i < 10; i++ {
		if res := httpGet(urls[false]+"/readyz", ""); res.status != http.StatusOK {
			t.Fatalf("audit.require off: /readyz = %d %s during the outage, want 200", res.status, res.body)
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
}
