package gate_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/firstseen"
	"github.com/modgate/modgate/internal/gate"
	"github.com/modgate/modgate/internal/goproxy"
	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
	"github.com/modgate/modgate/internal/route"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

// coolingGate is the gate of a server running the repository's policy with the
// cool-down on (72 hours), the first-sight store on a real PostgreSQL, and
// sources that count the .info reads. The pool counts its statements.
type coolingGate struct {
	*gate.Gate
	pool       *pgxpool.Pool
	infoReads  atomic.Int64
	statements atomic.Int64
}

func newCoolingGate(t testing.TB) *coolingGate {
	t.Helper()
	dir := t.TempDir()
	src, _ := filepath.Glob("../../policy/*")
	for _, f := range src {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(f)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	settings := "settings:\n  cooldown:\n    enabled: true\n    hours: 72\n    exempt: [golang.org/x]\n"
	if err := os.WriteFile(filepath.Join(dir, "settings.yaml"), []byte(settings), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	pol, err := policy.Load(ctx, dir, policy.Options{SkipTests: true})
	if err != nil {
		t.Fatal(err)
	}
	if !pol.NeedsVersionTime() {
		t.Fatal("the cool-down is not on")
	}
	cg := &coolingGate{}
	cfg, err := pgxpool.ParseConfig(pgtest.NewDatabase(t))
	if err != nil {
		t.Fatal(err)
	}
	cfg.ConnConfig.Tracer = statementCounter{&cg.statements}
	cg.pool, err = pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cg.pool.Close)
	cg.Gate = gate.New(pol, route.New("corp.example", nil), countingSources{&cg.infoReads})
	cg.SetFirstSeen(firstseen.New(cg.pool, 0, nil))
	return cg
}

// filter filters versions of module for a caller of its own (no decision
// cached), counting the statements and .info reads it costs.
func (cg *coolingGate) filter(t testing.TB, caller, module string, versions []string) (allowed []string, statements, infoReads int64) {
	t.Helper()
	req := gate.Request{
		Identity: &identity.Identity{Subject: caller, Teams: []string{"payments"}, Method: identity.MethodToken},
		Action:   policy.ActionList, Module: module, EscapedModule: module,
	}
	s0, i0 := cg.statements.Load(), cg.infoReads.Load()
	allowed, err := cg.FilterVersions(context.Background(), req, cg.Route(module), versions)
	if err != nil {
		t.Fatalf("FilterVersions(%s): %v", module, err)
	}
	return allowed, cg.statements.Load() - s0, cg.infoReads.Load() - i0
}

type statementCounter struct{ n *atomic.Int64 }

func (c statementCounter) TraceQueryStart(ctx context.Context, _ *pgx.Conn, _ pgx.TraceQueryStartData) context.Context {
	c.n.Add(1)
	return ctx
}
func (statementCounter) TraceQueryEnd(context.Context, *pgx.Conn, pgx.TraceQueryEndData) {}

// countingSources answers every .info with a time a year ago, counting them.
type countingSources struct{ n *atomic.Int64 }

func (s countingSources) Info(_ context.Context, _ route.Route, _, _, version string) (goproxy.Info, error) {
	s.n.Add(1)
	return goproxy.Info{Version: version, Time: time.Now().Add(-365 * 24 * time.Hour)}, nil
}
func (countingSources) Exists(context.Context, route.Route, string, string) error { return nil }

// With the cool-down on, a list is filtered by first sight with one database
// statement and no .info read: versions first seen long ago are listed, versions
// first seen now (whatever their .info Time says) are held, and a download of a
// listed version is allowed. A list the cache holds costs no statement; with
// the database down, the list is what the cache knows and costs no .info read.
func TestFilterVersionsCooldownOneStatement(t *testing.T) {
	cg := newCoolingGate(t)
	ctx := context.Background()
	const mod = "github.com/example/leftpad"
	var versions, old []string
	for i := range 1000 {
		v := fmt.Sprintf("v1.%d.%d", i/100, i%100)
		versions = append(versions, v)
		if i%3 == 0 {
			old = append(old, v)
		}
	}
	if _, err := cg.pool.Exec(ctx, `INSERT INTO version_first_seen (module, version, first_seen)
		SELECT $1, unnest($2::text[]), now() - interval '200 days'`, mod, old); err != nil {
		t.Fatal(err)
	}
	got, statements, infoReads := cg.filter(t, "dev1", mod, versions)
	if !slices.Equal(got, old) {
		t.Errorf("listed %d versions, want the %d first seen long ago", len(got), len(old))
	}
	if statements != 1 || infoReads != 0 {
		t.Errorf("filtering %d versions cost %d statements and %d .info reads, want 1 and 0", len(versions), statements, infoReads)
	}
	var n int
	if err := cg.pool.QueryRow(ctx, `SELECT count(*) FROM version_first_seen WHERE module = $1`, mod).Scan(&n); err != nil || n != len(versions) {
		t.Errorf("first sights recorded: %d (%v), want %d", n, err, len(versions))
	}

	// Consistent with downloads: a listed version is allowed, a held one is
	// refused for the cool-down (its .info Time, a year ago, does not help).
	for _, tt := range []struct {
		version string
		allow   bool
	}{{old[1], true}, {versions[1], false}} {
		req := gate.Request{
			Identity: &identity.Identity{Subject: "dev1", Teams: []string{"payments"}, Method: identity.MethodToken},
			Action:   policy.ActionZip, Module: mod, EscapedModule: mod, Version: tt.version,
		}
		_, d, err := cg.Authorize(ctx, req)
		if d.Allow != tt.allow || (!tt.allow && !strings.Contains(fmt.Sprint(err), "cool-down")) {
			t.Errorf("download of %s: allow=%v err=%v; want allow=%v (cool-down)", tt.version, d.Allow, err, tt.allow)
		}
	}

	// Listed again by another caller: the cache holds every version.
	if got, statements, infoReads := cg.filter(t, "dev2", mod, versions); !slices.Equal(got, old) || statements != 0 || infoReads != 0 {
		t.Errorf("second listing: %d versions, %d statements, %d .info reads; want %d, 0, 0", len(got), statements, infoReads, len(old))
	}

	// The database down: versions the cache holds are decided, the rest held,
	// still without an .info read.
	cg.pool.Close()
	more := append(slices.Clone(versions), "v2.0.0")
	if got, _, infoReads := cg.filter(t, "dev3", mod, more); !slices.Equal(got, old) || infoReads != 0 {
		t.Errorf("listing with the database down: %d versions, %d .info reads; want %d, 0", len(got), infoReads, len(old))
	}
}

// BenchmarkFilterVersions400kCooldown is BenchmarkFilterVersions400k
// (internal/policy) through the gate with the cool-down on and the first-sight
// store on a real PostgreSQL: a 400,000-version list filtered for a new caller
// each iteration. "first-sight" lists a module modgate never saw (every version
// recorded); "seen" one whose versions were all recorded, a third of them long
// ago. Reported: time per list, heap growth (heap-MB, in use after filtering
// above before the list was built), .info reads and statements per list
// (targets: under 1 s, under 50 MB, 0 and 1).
func BenchmarkFilterVersions400kCooldown(b *testing.B) {
	for _, seen := range []bool{false, true} {
		name := map[bool]string{false: "first-sight", true: "seen"}[seen]
		b.Run(name, func(b *testing.B) {
			cg := newCoolingGate(b)
			runtime.GC()
			var before runtime.MemStats
			runtime.ReadMemStats(&before)
			versions := make([]string, 400_000)
			for i := range versions {
				versions[i] = fmt.Sprintf("v1.%d.%d", i/1000, i%1000)
			}
			mod := "github.com/example/leftpad"
			if seen {
				if _, err := cg.pool.Exec(context.Background(), `INSERT INTO version_first_seen (module, version, first_seen)
					SELECT $1, v, CASE WHEN i % 3 = 0 THEN now() - interval '200 days' ELSE now() END
					FROM unnest($2::text[]) WITH ORDINALITY AS u(v, i)`, mod, versions); err != nil {
					b.Fatal(err)
				}
			}
			var statements, infoReads int64
			var peak uint64
			n := 0
			b.ReportAllocs()
			for b.Loop() {
				n++
				if !seen {
					mod = fmt.Sprintf("github.com/example/leftpad%d", n)
				}
				got, s, i := cg.filter(b, fmt.Sprintf("dev%d@corp.example", n), mod, versions)
				if seen != (len(got) > 0) || len(got) == len(versions) {
					b.Fatalf("listed %d of %d versions", len(got), len(versions))
				}
				statements += s
				infoReads += i
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				peak = max(peak, m.HeapInuse)
			}
			b.ReportMetric(float64(peak-min(peak, before.HeapInuse))/(1<<20), "heap-MB")
			b.ReportMetric(float64(statements)/float64(n), "statements/op")
			b.ReportMetric(float64(infoReads)/float64(n), "info-reads/op")
		})
	}
}
