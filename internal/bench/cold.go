package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// coldTarget is issue 19's bound for the fill path: `go mod download all` of the
// graph through an empty modgate takes at most 1.15x the same command straight
// from modgate's upstream.
var coldTarget = Target{Op: "<=", Bound: 1.15}

// coldUpstreamLatency is added to every upstream answer, on both sides, so that a
// round trip modgate makes in series with the go command's own shows in the
// figure as it would against a real mirror; a loopback upstream answering in
// microseconds would hide it.
const coldUpstreamLatency = 10 * time.Millisecond

// runDownloadAllCold times `go mod download all` of the benchmark graph through a
// modgate with an empty cache, a new one for every run, against the same command
// with GOPROXY set to modgate's upstream. Runs alternate (ABBA) and each goes into
// a fresh module cache.
func runDownloadAllCold(ctx context.Context, env *Env) ([]Result, error) {
	tree, zips, err := populate(ctx, env)
	if err != nil {
		return nil, err
	}
	client, err := newGoClient(env.Go, env.Graph, env.Dir)
	if err != nil {
		return nil, err
	}
	up, err := startFileUpstream(tree, coldUpstreamLatency)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	// modgate verifies what it fetches as deployed, against a checksum database
	// the upstream serves: a real signed log of the graph's go.sum, so every
	// lookup and tile round trip it makes is in the figure. The go command on the
	// other side checks the same hashes against go.sum, as it does through modgate.
	db, err := goSumDB(filepath.Join(env.Graph, "go.sum"))
	if err != nil {
		return nil, err
	}
	up.mountSumDB(db.Name(), db.Handler())
	config := fmt.Sprintf("sumdb:\n  verify: true\n  key: %q\nserver:\n  rate_limit:\n    requests_per_second: 0\n", db.Key())
	modcacheRoot := env.ModCacheDir
	if modcacheRoot == "" {
		modcacheRoot = filepath.Join(env.Dir, "gomodcache")
	}
	if err := mkdir(modcacheRoot); err != nil {
		return nil, err
	}
	download := func(proxy string) (goRun, error) {
		mc, err := os.MkdirTemp(modcacheRoot, "gomodcache-")
		if err != nil {
			return goRun{}, fmt.Errorf("bench: %w", err)
		}
		defer removeAll(mc)
		return client.downloadAll(ctx, client.offlineEnv(proxy, mc), mc, zips)
	}
	// viaModgate starts a modgate with an empty cache for one run; starting it is
	// not timed.
	viaModgate := func(run int) (goRun, error) {
		dir := filepath.Join(env.Dir, fmt.Sprintf("cold-%d", run))
		mg, err := startModgateConfig(ctx, env.Modgate, config, up.URL, filepath.Join(dir, "cache"), filepath.Join(env.Dir, fmt.Sprintf("cold-%d.log", run)))
		if err != nil {
			return goRun{}, err
		}
		defer func() {
			mg.Stop()
			removeAll(dir)
		}()
		return download(mg.URL)
	}
	wall := map[string][]float64{}
	runs := max(3, env.Runs/3)
	for i := range env.Warmup + runs {
		order := []string{"modgate", "upstream"}
		if i%2 == 1 {
			order = []string{"upstream", "modgate"}
		}
		for _, side := range order {
			var run goRun
			var err error
			if side == "modgate" {
				run, err = viaModgate(i)
			} else {
				run, err = download(up.URL)
			}
			if err != nil {
				return nil, fmt.Errorf("cold run %d via %s: %w", i+1, side, err)
			}
			timed := i >= env.Warmup
			env.Log.Info("cold run", "side", side, "run", i+1, "timed", timed, "seconds", seconds(run.Wall))
			if timed {
				wall[side] = append(wall[side], seconds(run.Wall))
			}
		}
	}
	r := ratioResult(fmt.Sprintf("cold go mod download all through an empty modgate vs straight from its upstream (%s per upstream answer, modgate verifying against the checksum database), median of %d", coldUpstreamLatency, runs),
		"s", wall, "modgate", "upstream", &coldTarget)
	r.Notes = append(r.Notes, fmt.Sprintf("%d modules; a new modgate with an empty cache for every run; both sides read the same loopback upstream", zips))
	return []Result{r}, nil
}

// goSumDB builds a signed checksum database (named sum.bench.test) vouching for
// every version in a go.sum file. A version go.sum knows only by its go.mod gets
// a zip hash no zip has; nothing downloads those zips.
func goSumDB(goSum string) (*sumdbtest.DB, error) {
	data, err := os.ReadFile(goSum)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	byKey := map[string]*sumdbtest.Record{}
	var order []string
	for line := range strings.Lines(string(data)) {
		f := strings.Fields(line)
		if len(f) != 3 {
			continue
		}
		version, isMod := strings.CutSuffix(f[1], "/go.mod")
		key := f[0] + "@" + version
		r := byKey[key]
		if r == nil {
			r = &sumdbtest.Record{Path: f[0], Version: version, Sum: "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="}
			byKey[key] = r
			order = append(order, key)
		}
		if isMod {
			r.GoModSum = f[2]
		} else {
			r.Sum = f[2]
		}
	}
	records := make([]sumdbtest.Record, 0, len(order))
	for _, k := range order {
		records = append(records, *byKey[k])
	}
	return sumdbtest.FromRecords("sum.bench.test", records)
}
