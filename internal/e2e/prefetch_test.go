package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// A zip the policy refuses while allowing the version's .info: modgate must not
// fetch it on the caller's behalf.
const prefetchDenyRego = `package modgate.authz

deny contains "zips of mod.test/legacy are not served here" if {
	input.action == "zip"
	input.module == "mod.test/legacy"
}
`

const prefetchPolicyData = `settings:
  admin_teams: [platform-admins]
  anonymous: public
`

// The first .info of a public version has modgate fetch and verify the zip into
// the cache before the go command asks for it: the zip is then a hit, fetched
// upstream once, with the checksum database's hash. Zips the policy refuses
// the caller are never prefetched, and nothing is when prefetching is off.
// (Private versions are never prefetched either: TestPrefetchZipPublicOnly.)
func TestZipPrefetchedOnInfo(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	policyDir := copyPolicy(t, map[string]string{"data.yaml": prefetchPolicyData, "prefetch_deny.rego": prefetchDenyRego})
	pol, err := policy.Load(context.Background(), policyDir, policy.Options{})
	if err != nil {
		t.Fatal(err)
	}
	mg := startVerifyingProxyWithPolicy(t, pol, upstream.URL, db.Key(), t.TempDir(), func(c *config.Config) {
		c.Cache.PrefetchZips = 1 // one worker: prefetches run in the order queued
	})
	if code, body := get(t, mg.URL+proxytest.ZipPath(proxytest.LegacyPath, "v1.0.0")); code != http.StatusForbidden {
		t.Fatalf("the policy does not refuse legacy's zip: %d %s", code, body)
	}
	upstream.ResetRequests()
	getOK := func(path string) {
		t.Helper()
		if code, body := get(t, mg.URL+path); code != http.StatusOK {
			t.Fatalf("GET %s = %d %s", path, code, body)
		}
	}

	// Refused zip first, then an allowed one: with one worker, the allowed
	// zip being stored means the queue has passed the refused one.
	getOK(proxytest.InfoPath(proxytest.LegacyPath, "v1.0.0"))
	getOK(proxytest.InfoPath(proxytest.HelloPath, "v1.0.0"))
	helloZip := proxytest.ZipPath(proxytest.HelloPath, "v1.0.0")
	deadline := time.Now().Add(10 * time.Second)
	for !cachedObject(mg.CacheDir, helloZip) {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not prefetched into the cache after its .info", helloZip)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if n := upstream.Hits(proxytest.ZipPath(proxytest.LegacyPath, "v1.0.0")); n != 0 {
		t.Errorf("the zip the policy refuses was fetched upstream %d times", n)
	}
	if db.Lookups(proxytest.HelloPath) == 0 {
		t.Error("the prefetched zip was not verified against the checksum database")
	}

	// The go command then gets the zip from the cache, with the right hash.
	g := gotest.New(t, "GOPROXY="+mg.URL, "GOSUMDB="+db.Key())
	downloadOne(t, g, upstream, proxytest.HelloPath, "v1.0.0")
	if n := upstream.Hits(helloZip); n != 1 {
		t.Errorf("%s fetched upstream %d times, want 1", helloZip, n)
	}
	if n := prefetchCount(t, mg, "fetched"); n != 1 {
		t.Errorf("modgate_zip_prefetches_total{result=fetched} = %v, want 1 (upstream was asked for %q)", n, upstream.Paths())
	}

	// A cached .info prefetches nothing again.
	upstream.ResetRequests()
	getOK(proxytest.InfoPath(proxytest.HelloPath, "v1.0.0"))
	getOK(proxytest.InfoPath(proxytest.HelloPath, "v1.1.0")) // queued after it, were it queued
	helloZip2 := proxytest.ZipPath(proxytest.HelloPath, "v1.1.0")
	for !cachedObject(mg.CacheDir, helloZip2) {
		if time.Now().After(deadline) {
			t.Fatalf("%s was not prefetched", helloZip2)
		}
		time.Sleep(10 * time.Millisecond)
	}
	for _, p := range upstream.Paths() {
		if strings.HasSuffix(p, ".zip") && p != helloZip2 {
			t.Errorf("upstream asked for %s", p)
		}
	}

	t.Run("off", func(t *testing.T) {
		off := startVerifyingProxyWithPolicy(t, pol, upstream.URL, db.Key(), t.TempDir(), func(c *config.Config) {
			c.Cache.PrefetchZips = 0
		})
		upstream.ResetRequests()
		if code, body := get(t, off.URL+proxytest.InfoPath(proxytest.HelloV2Path, "v2.0.0")); code != http.StatusOK {
			t.Fatalf("GET .info = %d %s", code, body)
		}
		time.Sleep(200 * time.Millisecond)
		if n := upstream.Hits(proxytest.ZipPath(proxytest.HelloV2Path, "v2.0.0")); n != 0 {
			t.Errorf("with cache.prefetch_zips 0 the zip was fetched %d times", n)
		}
	})
}

func prefetchCount(t *testing.T, p *verifyingProxy, result string) float64 {
	t.Helper()
	mfs, err := p.Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "modgate_zip_prefetches_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
