package bench

import (
	"context"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
)

// warmTarget is PRODUCT.md's bound: a warm `go mod download all` through modgate
// takes at most 1.1x the time of the same command reading a file:// GOPROXY.
var warmTarget = Target{Op: "<=", Bound: 1.1}

// runDownloadAll times `go mod download all` of the benchmark graph, each run into
// a fresh, empty GOMODCACHE:
//
//   - cold: through a modgate with an empty cache over a loopback upstream serving
//     the populated tree (so the figure is modgate's fill path, not the internet);
//   - warm: through the same modgate, now holding every object, alternating with
//     the baseline, GOPROXY=file:// on the very same tree. Alternating (ABBA) spreads
//     drift in machine load over both sides.
//
// Both sides run the identical go command, environment and go.sum verification;
// only GOPROXY differs.
func runDownloadAll(ctx context.Context, env *Env) ([]Result, error) {
	tree, zips, err := populate(ctx, env)
	if err != nil {
		return nil, err
	}
	client, err := newGoClient(env.Go, env.Graph, env.Dir)
	if err != nil {
		return nil, err
	}
	up, err := startFileUpstream(tree, 0)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	mg, err := startModgate(ctx, env.Modgate, up.URL, filepath.Join(env.Dir, "modgate-cache"), filepath.Join(env.Dir, "modgate.log"))
	if err != nil {
		return nil, err
	}
	defer mg.Stop()

	modcacheRoot := env.ModCacheDir
	if modcacheRoot == "" {
		modcacheRoot = filepath.Join(env.Dir, "gomodcache")
	}
	if err := os.MkdirAll(modcacheRoot, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	// measure runs one download into a fresh module cache, removed afterwards (not
	// timed), and returns the wall time and the CPU time modgate spent meanwhile.
	measure := func(proxy string) (goRun, cpuTime, error) {
		mc, err := os.MkdirTemp(modcacheRoot, "gomodcache-")
		if err != nil {
			return goRun{}, cpuTime{}, fmt.Errorf("bench: %w", err)
		}
		defer removeAll(mc)
		// modgate's CPU time comes from /proc; elsewhere it is reported as -1.
		cpu0, cpuErr := mg.CPU()
		run, err := client.downloadAll(ctx, client.offlineEnv(proxy, mc), mc, zips)
		if err != nil {
			return run, cpuTime{}, err
		}
		cpu1, err := mg.CPU()
		if cpuErr != nil || err != nil {
			return run, cpuTime{User: -1, Sys: -1}, nil
		}
		return run, cpuTime{User: cpu1.User - cpu0.User, Sys: cpu1.Sys - cpu0.Sys}, nil
	}

	env.Log.Info("cold run through modgate", "modules", zips, "upstream", up.URL, "modgate", mg.URL)
	cold, coldCPU, err := measure(mg.URL)
	if err != nil {
		return nil, fmt.Errorf("cold run: %w", err)
	}
	coldUpstream := up.Requests()
	coldRequests, _, err := mg.LogStats()
	if err != nil {
		return nil, err
	}
	env.Log.Info("cold run done", "seconds", seconds(cold.Wall), "upstream_requests", coldUpstream)

	fileProxy := "file://" + filepath.ToSlash(tree)
	sides := []struct {
		name, proxy string
	}{{"modgate", mg.URL}, {"file://", fileProxy}}
	wall := map[string][]float64{}
	goCPU := map[string][]float64{}
	var mgCPU, mgUser, mgSys, mgRequests, mgLogKB []float64
	upBefore := up.Requests()
	for i := range env.Warmup + env.Runs {
		order := []int{0, 1}
		if i%2 == 1 {
			order = []int{1, 0}
		}
		for _, j := range order {
			s := sides[j]
			req0, log0, err := mg.LogStats()
			if err != nil {
				return nil, err
			}
			run, cpu, err := measure(s.proxy)
			if err != nil {
				return nil, fmt.Errorf("warm run %d via %s: %w", i+1, s.name, err)
			}
			req1, log1, err := mg.LogStats()
			if err != nil {
				return nil, err
			}
			timed := i >= env.Warmup
			env.Log.Info("warm run", "side", s.name, "run", i+1, "timed", timed, "seconds", seconds(run.Wall))
			if !timed {
				continue
			}
			wall[s.name] = append(wall[s.name], seconds(run.Wall))
			goCPU[s.name] = append(goCPU[s.name], seconds(run.CPU))
			if s.name == "modgate" {
				if cpu.User >= 0 {
					mgCPU = append(mgCPU, seconds(cpu.Total()))
					mgUser = append(mgUser, seconds(cpu.User))
					mgSys = append(mgSys, seconds(cpu.Sys))
				}
				mgRequests = append(mgRequests, float64(req1-req0))
				mgLogKB = append(mgLogKB, float64((log1-log0)/1024))
			}
		}
	}
	warmUpstream := up.Requests() - upBefore

	coldResult := Result{
		Figure:       "cold go mod download all through modgate (loopback upstream)",
		Unit:         "s",
		Value:        seconds(cold.Wall),
		BaselineName: "warm file:// median",
		Baseline:     median(wall["file://"]),
		Samples: map[string][]float64{
			"modgate cold (s)":                           {seconds(cold.Wall)},
			"go command CPU, cold (s)":                   {seconds(cold.CPU)},
			"modgate CPU during cold, user + system (s)": {seconds(coldCPU.User), seconds(coldCPU.Sys)},
		},
		Notes: []string{
			fmt.Sprintf("%d modules; %d upstream requests (%d answered 404), %d requests served by modgate", zips, coldUpstream, up.NotFound(), coldRequests),
		},
	}
	coldResult.Ratio = coldResult.Value / coldResult.Baseline

	warm := compared(fmt.Sprintf("warm go mod download all, median of %d", env.Runs), "s",
		median(wall["modgate"]), "file:// GOPROXY", median(wall["file://"]), warmTarget)
	warm.judge(bootstrapCI(func(s ...[]float64) float64 { return median(s[0]) / median(s[1]) }, wall["modgate"], wall["file://"]))
	warm.Samples = map[string][]float64{
		"modgate (s)":                                 wall["modgate"],
		"file:// (s)":                                 wall["file://"],
		"go command CPU via modgate (s)":              goCPU["modgate"],
		"go command CPU via file:// (s)":              goCPU["file://"],
		"modgate CPU per modgate-side run (s)":        mgCPU,
		"modgate user CPU per modgate-side run (s)":   mgUser,
		"modgate system CPU per modgate-side run (s)": mgSys,
		"requests served by modgate per run":          mgRequests,
		"modgate log KB per run":                      mgLogKB,
	}
	// Two views that a loaded machine disturbs less than the medians: the ratio of
	// the two runs of each adjacent pair, which share the machine's state, and the
	// fastest run of each side, which is the least disturbed.
	pairRatios := make([]float64, 0, len(wall["modgate"]))
	for i := range wall["modgate"] {
		pairRatios = append(pairRatios, math.Round(wall["modgate"][i]/wall["file://"][i]*1000)/1000)
	}
	warm.Samples["modgate/file:// per adjacent pair"] = pairRatios
	warm.Notes = []string{
		fmt.Sprintf("%d modules, %d warm-up run(s) per side before the timed ones, order alternated (ABBA)", zips, env.Warmup),
		fmt.Sprintf("median of per-pair ratios %.3f; fastest runs %.3f s vs %.3f s (ratio %.3f)",
			median(pairRatios), slices.Min(wall["modgate"]), slices.Min(wall["file://"]), slices.Min(wall["modgate"])/slices.Min(wall["file://"])),
	}
	// CPU time is the work done, which other load on the machine barely changes:
	// the go command's plus modgate's on one side, the go command's on the other.
	var mgSideCPU []float64
	for i := range goCPU["modgate"] {
		c := goCPU["modgate"][i]
		if i < len(mgCPU) && mgCPU[i] > 0 {
			c += mgCPU[i]
		}
		mgSideCPU = append(mgSideCPU, c)
	}
	cpu := Result{
		Figure:       "CPU per warm run, go command + modgate vs go command (file://), medians",
		Unit:         "s",
		Value:        median(mgSideCPU),
		BaselineName: "file:// GOPROXY",
		Baseline:     median(goCPU["file://"]),
	}
	cpu.Ratio = cpu.Value / cpu.Baseline
	cpu.judge(bootstrapCI(func(s ...[]float64) float64 { return median(s[0]) / median(s[1]) }, mgSideCPU, goCPU["file://"]))
	upstreamResult := Result{
		Figure: "upstream requests during warm runs",
		Unit:   "requests",
		Value:  float64(warmUpstream),
		Target: &Target{Op: "<=", Bound: 0},
	}
	pass := upstreamResult.Target.met(upstreamResult.Value)
	upstreamResult.Pass = &pass
	return []Result{warm, cpu, coldResult, upstreamResult}, nil
}
