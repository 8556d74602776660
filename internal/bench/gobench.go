package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"

	"github.com/modgate/modgate/internal/gctune"
)

// Targets from PRODUCT.md for the components measured by their Go benchmarks.
var (
	// policyMissP99Target bounds a decision OPA evaluates (a cache miss) with the
	// shipped policy, in microseconds.
	policyMissP99Target = Target{Op: "<=", Bound: 100}
	// auditRateTarget is sustained audit events per second into PostgreSQL.
	auditRateTarget = Target{Op: ">=", Bound: 20000}
)

// goBenchCount is how many times each Go benchmark runs; figures are medians.
const goBenchCount = 5

// runGoBench runs `go test -run '^$' -bench pattern` on pkg from the repository
// root and returns, per sub-benchmark name (without the -N GOMAXPROCS suffix),
// each run's metrics by unit.
func runGoBench(ctx context.Context, env *Env, pkg, pattern string, extraEnv []string, extraArgs ...string) (map[string][]map[string]float64, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	args := append([]string{"test", "-run", "^$", "-bench", pattern, "-count", strconv.Itoa(goBenchCount)}, extraArgs...)
	args = append(args, pkg)
	cmd := exec.CommandContext(ctx, env.Go, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), extraEnv...)
	env.Log.Info("go benchmark", "package", pkg, "bench", pattern)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return nil, fmt.Errorf("bench: go %s: %w\n%s", strings.Join(args, " "), err, tail(out, 3000))
	}
	res := parseGoBench(out)
	if len(res) == 0 {
		return nil, fmt.Errorf("bench: go %s printed no benchmark results\n%s", strings.Join(args, " "), tail(out, 3000))
	}
	return res, nil
}

// parseGoBench reads the standard benchmark format:
// "BenchmarkX/sub-2   1000   123 ns/op   45 p99-ns ...".
func parseGoBench(out []byte) map[string][]map[string]float64 {
	res := map[string][]map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "Benchmark") {
			continue
		}
		name := f[0]
		if i := strings.LastIndexByte(name, '-'); i > 0 {
			if _, err := strconv.Atoi(name[i+1:]); err == nil {
				name = name[:i]
			}
		}
		m := map[string]float64{}
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				break
			}
			m[f[i+1]] = v
		}
		res[name] = append(res[name], m)
	}
	return res
}

// series returns one metric of every run of a benchmark, scaled.
func series(runs []map[string]float64, unit string, scale float64) []float64 {
	var out []float64
	for _, r := range runs {
		if v, ok := r[unit]; ok {
			out = append(out, round3(v*scale))
		}
	}
	return out
}

// valueResult is a figure without a baseline: the median of samples with the
// bootstrap interval of that median, judged against target when there is one.
func valueResult(figure, unit string, samples []float64, target *Target) Result {
	r := Result{Figure: figure, Unit: unit, Value: median(samples), Target: target, Samples: map[string][]float64{"runs": samples}}
	lo, hi := bootstrapCI(func(s ...[]float64) float64 { return median(s[0]) }, samples)
	r.judge(lo, hi)
	return r
}

// runPolicy runs internal/policy's BenchmarkDecide: decision latency with the
// shipped policy and a generated one of 1,000 teams and 10,000 owned prefixes,
// from the decision cache (hit) and evaluated by OPA (miss). The benchmark
// process runs the collector as modgate serve does (gctune.DefaultPercent): a
// decision's tail latency is mostly the collections it overlaps.
func runPolicy(ctx context.Context, env *Env) ([]Result, error) {
	gogc := []string{"GOGC=" + strconv.Itoa(gctune.DefaultPercent)}
	res, err := runGoBench(ctx, env, "./internal/policy", "^BenchmarkDecide$", gogc, "-benchtime", "0.5s")
	if err != nil {
		return nil, err
	}
	var out []Result
	for _, p := range []string{"default", "large"} {
		for _, c := range []string{"miss", "hit"} {
			runs := res["BenchmarkDecide/"+p+"/"+c]
			if len(runs) == 0 {
				return nil, fmt.Errorf("bench: BenchmarkDecide/%s/%s did not run", p, c)
			}
			name := map[string]string{"default": "the shipped policy", "large": "1,000 teams, 10,000 prefixes"}[p]
			for _, q := range []string{"p50", "p99"} {
				var target *Target
				if p == "default" && c == "miss" && q == "p99" {
					target = &policyMissP99Target
				}
				out = append(out, valueResult(fmt.Sprintf("decision %s, cache %s, %s", q, c, name), "µs", series(runs, q+"-ns", 1e-3), target))
			}
		}
	}
	return out, nil
}

// runAudit runs internal/audit's BenchmarkWriterThroughput: events recorded by
// 256 concurrent goroutines until committed in PostgreSQL, in the project's
// throwaway cluster.
func runAudit(ctx context.Context, env *Env) ([]Result, error) {
	db, err := startBenchDatabase(ctx)
	if err != nil {
		return nil, err
	}
	defer db.Close()
	res, err := runGoBench(ctx, env, "./internal/audit", "^BenchmarkWriterThroughput$",
		[]string{"MODGATE_TEST_DATABASE_URL=" + db.adminURL}, "-benchtime", "100000x")
	if err != nil {
		return nil, err
	}
	runs := res["BenchmarkWriterThroughput"]
	if len(runs) == 0 {
		return nil, errors.New("bench: BenchmarkWriterThroughput did not run")
	}
	return []Result{
		valueResult("sustained audit events/s into PostgreSQL (256 recorders, 100,000 events per run, fsync on)", "events/s", series(runs, "in-postgres/s", 1), &auditRateTarget),
		valueResult("Record latency p99 (256 recorders)", "ms", series(runs, "p99-record-ms", 1), nil),
	}, nil
}
