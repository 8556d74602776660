package policy

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/derrors"
)

// coolingPolicy is the shipped policy with the cool-down on (72 hours) and
// github.com/example/leftpad v1.3.1 deny-listed (its Rego test that says the
// cool-down is off by default no longer holds, so tests are skipped).
func coolingPolicy(t testing.TB) string {
	t.Helper()
	dir := copyPolicy(t, defaultDir)
	writeFile(t, dir, "settings.yaml", `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: public
  cooldown:
    enabled: true
    hours: 72
    exempt: [golang.org/x]
`)
	return dir
}

// FilterVersions, which evaluates the policy once per class of versions, keeps
// exactly the versions a per-version decision allows: deny-listed versions,
// versions inside the cool-down, past it, of unknown and of unparsable time.
func TestFilterVersionsMatchesPerVersionDecisions(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, coolingPolicy(t), Options{SkipTests: true})
	times := map[string]string{
		"v1.3.0": "2026-11-01T08:00:00Z", // past the cool-down
		"v1.3.1": "2026-11-01T08:00:00Z", // deny-listed
		"v1.3.2": "2026-11-25T08:00:00Z", // two hours old: inside
		"v1.3.3": "",                     // unknown
		"v1.3.4": "2026-11-22T09:59:59Z", // just past 72 hours
		"v1.3.5": "2026-11-22T10:00:01Z", // just inside
		"v1.3.6": "2026-10-01T00:00:00Z",
		"v1.3.7": "2026-11-25T09:00:00Z",
	}
	var versions []string
	for v := range times {
		versions = append(versions, v)
	}
	slices.Sort(versions)
	ctx := context.Background()
	for _, mod := range []string{"github.com/example/leftpad", "golang.org/x/text"} {
		in := pull(member("dev@corp.example", "payments"), ActionList, RoutePublic, mod, "")
		got, err := e.FilterVersions(ctx, in, versions, func(i int) string { return times[versions[i]] })
		if err != nil {
			t.Fatal(err)
		}
		var want []string
		for _, v := range versions {
			one := pull(member("dev@corp.example", "payments"), ActionZip, RoutePublic, mod, v)
			one.VersionTime = times[v]
			d, err := e.Decide(ctx, one)
			if err != nil {
				t.Fatal(err)
			}
			if d.Allow {
				want = append(want, v)
			}
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: FilterVersions = %v, per-version decisions allow %v", mod, got, want)
		}
		if mod == "github.com/example/leftpad" && (slices.Contains(got, "v1.3.1") || slices.Contains(got, "v1.3.2") || !slices.Contains(got, "v1.3.0")) {
			t.Errorf("%s: %v: want v1.3.1 (deny-listed) and v1.3.2 (cooling) out, v1.3.0 in", mod, got)
		}
	}
}

// A list longer than MaxListVersions is refused with a reason, not filtered.
func TestFilterVersionsCap(t *testing.T) {
	t.Parallel()
	e := loadEngine(t, defaultDir, Options{})
	versions := make([]string, MaxListVersions+1)
	for i := range versions {
		versions[i] = "v1.0.0"
	}
	in := pull(member("dev@corp.example", "payments"), ActionList, RoutePublic, "github.com/example/big", "")
	_, err := e.FilterVersions(context.Background(), in, versions, nil)
	if !errors.Is(err, derrors.BadUpstream) || err == nil {
		t.Fatalf("FilterVersions of %d versions = %v, want a BadUpstream refusal", len(versions), err)
	}
}

// BenchmarkFilterVersions400k filters a 400,000-version list for a new caller
// each iteration (no decision cached), with the cool-down on and a time for
// every version. Targets (issue 16): well under 1 s per list, heap growth under
// 50 MB; heap-MB reports the heap in use after the filtering, above the heap
// before the list was built.
func BenchmarkFilterVersions400k(b *testing.B) {
	e := loadEngine(b, coolingPolicy(b), Options{SkipTests: true})
	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	versions := make([]string, 400_000)
	for i := range versions {
		versions[i] = fmt.Sprintf("v1.%d.%d", i/1000, i%1000)
	}
	published := testNow.Add(-100 * time.Hour).Format(time.RFC3339)
	recent := testNow.Add(-time.Hour).Format(time.RFC3339)
	timeOf := func(i int) string {
		if v := versions[i]; v[len(v)-1] == '7' {
			return recent
		}
		return published
	}
	ctx := context.Background()
	n := 0
	var peak uint64
	b.ReportAllocs()
	for b.Loop() {
		n++
		in := pull(member(fmt.Sprintf("dev%d@corp.example", n), "payments"), ActionList, RoutePublic, "github.com/example/leftpad", "")
		got, err := e.FilterVersions(ctx, in, versions, timeOf)
		if err != nil || len(got) == 0 || len(got) == len(versions) {
			b.Fatalf("FilterVersions = %d of %d versions, %v", len(got), len(versions), err)
		}
		var m runtime.MemStats
		runtime.ReadMemStats(&m)
		peak = max(peak, m.HeapInuse)
	}
	b.ReportMetric(float64(peak-min(peak, before.HeapInuse))/(1<<20), "heap-MB")
}
