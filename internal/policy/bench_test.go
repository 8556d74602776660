package policy

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"
)

// largePolicy writes the shipped authz.rego with generated data: teams teams
// owning prefixes prefixes (each shared with two other teams), a member entry
// per team and a deny list of 1,000 entries. The shipped Rego tests are left
// out: they assert the shipped data.
func largePolicy(b testing.TB, teams, prefixes int) (dir string, modules []benchModule) {
	b.Helper()
	dir = b.TempDir()
	rego, err := os.ReadFile(filepath.Join(defaultDir, "authz.rego"))
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, dir, "authz.rego", string(rego))
	settings, err := os.ReadFile(filepath.Join(defaultDir, "settings.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, dir, "settings.yaml", string(settings))

	owners := map[string]Owner{}
	for i := range prefixes {
		team := i % teams
		p := fmt.Sprintf("git.corp.example/team%d/project%d", team, i)
		owners[p] = Owner{Team: fmt.Sprintf("team%d", team), SharedWith: []string{
			fmt.Sprintf("team%d", (team+1)%teams), fmt.Sprintf("team%d", (team+7)%teams),
		}}
		modules = append(modules, benchModule{p + "/pkg/v2", fmt.Sprintf("team%d", team), RoutePrivate})
	}
	members := map[string][]string{}
	for i := range teams {
		members[fmt.Sprintf("svc-%d@corp.example", i)] = []string{fmt.Sprintf("team%d", i)}
	}
	deny := map[string]DenyEntry{}
	for i := range 1000 {
		deny[fmt.Sprintf("github.com/bad%d/mod", i)] = DenyEntry{Reason: "known bad", Versions: []string{"v1.0.0"}}
	}
	data, err := json.Marshal(Data{Owners: owners, Members: members, Denylist: deny})
	if err != nil {
		b.Fatal(err)
	}
	writeFile(b, dir, "generated.json", string(data))
	return dir, modules
}

// benchModule is a module a benchmark asks about, and the team that owns it
// ("" for public modules).
type benchModule struct {
	path  string
	owner string
	route Route
}

// BenchmarkDecide measures decision latency with the shipped policy and with a
// large generated one (1,000 teams, 10,000 owned prefixes), answered from the
// decision cache (hit) and evaluated by OPA (miss: cache disabled). It reports
// p50 and p99 per decision besides the mean.
func BenchmarkDecide(b *testing.B) {
	largeDir, largeModules := largePolicy(b, 1000, 10000)
	policies := []struct {
		name    string
		dir     string
		modules []benchModule
	}{
		{"default", defaultDir, []benchModule{
			{"corp.example/payments/ledger", "payments", RoutePrivate},
			{"corp.example/payments/api/v2", "payments", RoutePrivate},
			{"corp.example/checkout/cart", "checkout", RoutePrivate},
			{"corp.example/secret/signer", "platform", RoutePrivate},
			{"corp.example/platform/log", "platform", RoutePrivate},
			{"github.com/pkg/errors", "", RoutePublic},
			{"golang.org/x/mod", "", RoutePublic},
			{"github.com/example/leftpad", "", RoutePublic},
		}},
		{"large", largeDir, largeModules},
	}
	for _, p := range policies {
		for _, cache := range []string{"hit", "miss"} {
			b.Run(p.name+"/"+cache, func(b *testing.B) {
				opts := Options{SkipTests: true}
				if cache == "miss" {
					opts.CacheSize = -1
				}
				e := loadEngine(b, p.dir, opts)
				ctx := context.Background()
				rng := rand.New(rand.NewPCG(1, 2))
				// A developer in one or two teams pulls a module; nine times
				// out of ten one of their teams owns it (or it is public),
				// else the policy denies it.
				inputs := make([]Input, 256)
				for i := range inputs {
					m := p.modules[rng.IntN(len(p.modules))]
					team := m.owner
					if team == "" || rng.IntN(10) == 0 {
						team = fmt.Sprintf("team%d", rng.IntN(1000))
					}
					teams := []string{team}
					if rng.IntN(2) == 0 {
						teams = append(teams, "web")
					}
					in := pull(member(fmt.Sprintf("dev%d@corp.example", rng.IntN(50)), teams...),
						[]Action{ActionInfo, ActionMod, ActionZip}[rng.IntN(3)], m.route, m.path, fmt.Sprintf("v1.%d.0", rng.IntN(20)))
					in.VersionTime = "2026-01-02T03:04:05Z"
					inputs[i] = in
				}
				if cache == "hit" {
					for _, in := range inputs {
						if _, err := e.Decide(ctx, in); err != nil {
							b.Fatal(err)
						}
					}
				}
				lat := make([]time.Duration, 0, 1<<16)
				b.ReportAllocs()
				b.ResetTimer()
				cpu := processCPU()
				for i := 0; b.Loop(); i++ {
					start := time.Now()
					d, err := e.Decide(ctx, inputs[i%len(inputs)])
					lat = append(lat, time.Since(start))
					if err != nil {
						b.Fatal(err)
					}
					if d.Cached != (cache == "hit") {
						b.Fatalf("Cached = %v in the %s benchmark", d.Cached, cache)
					}
				}
				b.StopTimer()
				reportCPU(b, cpu, len(lat))
				slices.Sort(lat)
				b.ReportMetric(float64(lat[len(lat)*50/100].Nanoseconds()), "p50-ns")
				b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds()), "p99-ns")
			})
		}
	}
}

// BenchmarkFilterVersions filters a 100-version list, evaluated (miss) and
// from the cache (hit).
func BenchmarkFilterVersions(b *testing.B) {
	versions := make([]string, 100)
	for i := range versions {
		versions[i] = fmt.Sprintf("v1.%d.0", i)
	}
	timeOf := func(int) string { return "2026-01-02T03:04:05Z" }
	for _, cache := range []string{"hit", "miss"} {
		b.Run(cache, func(b *testing.B) {
			opts := Options{}
			if cache == "miss" {
				opts.CacheSize = -1
			}
			e := loadEngine(b, defaultDir, opts)
			in := pull(member("dev@corp.example", "payments"), ActionList, RoutePublic, "github.com/example/leftpad", "")
			ctx := context.Background()
			b.ReportAllocs()
			for b.Loop() {
				got, err := e.FilterVersions(ctx, in, versions, timeOf)
				if err != nil || len(got) != len(versions) {
					b.Fatalf("FilterVersions = %d versions, %v", len(got), err)
				}
			}
		})
	}
}

// BenchmarkDecideTrivialPolicy measures the engine and OPA's fixed cost per
// evaluated decision (a policy of one constant rule, cache disabled): the
// floor under BenchmarkDecide's misses on the machine at hand.
func BenchmarkDecideTrivialPolicy(b *testing.B) {
	dir := b.TempDir()
	writeFile(b, dir, "authz.rego", `package modgate.authz
decision := {"allow": true, "reasons": ["constant"]}
`)
	e := loadEngine(b, dir, Options{CacheSize: -1})
	in := pull(member("dev@corp.example", "payments"), ActionZip, RoutePublic, "github.com/pkg/errors", "v1.0.0")
	b.ReportAllocs()
	cpu, n := processCPU(), 0
	for b.Loop() {
		n++
		if _, err := e.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
	reportCPU(b, cpu, n)
}
