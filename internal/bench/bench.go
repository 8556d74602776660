// Package bench measures modgate against the quality targets in PRODUCT.md: each
// scenario runs the real binary against local fixtures and reports figures as ratios
// to a baseline measured in the same run (a file:// GOPROXY, nginx, the upstream
// itself), so that a slow or busy machine moves both sides together.
//
// `make bench` is the entry point; docs/benchmarks.md describes the scenarios and
// keeps the table of published results.
package bench

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"time"
)

// Config is what a benchmark run needs from its caller.
type Config struct {
	// Modgate is the modgate binary under test.
	Modgate string
	// Graph is the directory of the benchmark module graph (testdata/bench/graph).
	Graph string
	// CacheDir keeps what is expensive to make and never changes for a given graph:
	// the modules downloaded once from PopulateProxy. It survives between runs.
	CacheDir string
	// PopulateProxy is where the module graph is downloaded from, once per machine.
	PopulateProxy string
	// PopulateSumDB is the GOSUMDB the population verifies against ("off" in tests
	// whose modules are not public); go.sum should make asking it unnecessary.
	PopulateSumDB string
	// WorkDir holds a run's scratch state (module caches, modgate's cache, logs);
	// it is removed afterwards unless KeepWork is set.
	WorkDir  string
	KeepWork bool
	// ModCacheDir is where the go command's fresh GOMODCACHEs are made; empty means
	// inside WorkDir. See DefaultModCacheDir.
	ModCacheDir string
	// Runs is how many timed runs each side of a comparison gets; Warmup how many
	// untimed ones precede them.
	Runs   int
	Warmup int
	// LoadRuns is how many timed load runs (wrk) each side of a warm comparison
	// gets, alternating; LoadDuration how long each lasts.
	LoadRuns     int
	LoadDuration time.Duration
	// ProfileDir, when set, receives a CPU profile of modgate from the first timed
	// load run of each warm comparison (modgate serve --pprof-listen).
	ProfileDir string
	// Match selects scenarios by name; nil runs them all.
	Match *regexp.Regexp
	// Go is the go command used as the client.
	Go string
}

// Validate reports the first unusable setting.
func (c *Config) Validate() error {
	switch {
	case c.Modgate == "":
		return errors.New("bench: the modgate binary must be given")
	case c.Graph == "":
		return errors.New("bench: the module graph directory must be given")
	case c.CacheDir == "":
		return errors.New("bench: the cache directory must be given")
	case c.WorkDir == "":
		return errors.New("bench: the work directory must be given")
	case c.PopulateProxy == "":
		return errors.New("bench: the populate proxy must be given")
	case c.PopulateSumDB == "":
		return errors.New("bench: the populate checksum database must be given")
	case c.Runs < 1:
		return fmt.Errorf("bench: runs must be at least 1, not %d", c.Runs)
	case c.Warmup < 0:
		return fmt.Errorf("bench: warmup must not be negative, not %d", c.Warmup)
	case c.LoadRuns < 1:
		return fmt.Errorf("bench: load runs must be at least 1, not %d", c.LoadRuns)
	case c.LoadDuration < time.Second:
		return fmt.Errorf("bench: load duration must be at least 1s, not %s", c.LoadDuration)
	case c.Go == "":
		return errors.New("bench: the go command must be given")
	}
	for _, p := range []string{c.Modgate, filepath.Join(c.Graph, "go.mod"), filepath.Join(c.Graph, "go.sum")} {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("bench: %w", err)
		}
	}
	return nil
}

// Scenario is one benchmark. Run returns its figures; an error means the scenario
// could not be measured at all (a missed target is a Result, not an error).
type Scenario struct {
	Name    string
	Summary string
	Run     func(ctx context.Context, env *Env) ([]Result, error)
}

// Scenarios is the table of every benchmark, in the order they run. New scenarios
// (warm small objects against nginx, warm zip MB/s, cold storm, policy, audit,
// memory) are added here.
func Scenarios() []Scenario {
	return []Scenario{
		{
			Name:    "download-all",
			Summary: "go mod download all of the ~150-module graph: cold through modgate, and warm through modgate vs a file:// GOPROXY",
			Run:     runDownloadAll,
		},
		{
			Name:    "download-all-tls",
			Summary: "download-all with modgate as deployed: TLS, API token in .netrc, policy and audit on, vs file://",
			Run:     runDownloadAllTLS,
		},
		{
			Name:    "download-all-cold",
			Summary: "go mod download all of the graph through an empty modgate vs straight from its upstream (10 ms per upstream answer)",
			Run:     runDownloadAllCold,
		},
		{
			Name:    "cold-storm",
			Summary: "200 concurrent requests for one uncached 50 MB zip over a 20 ms upstream: upstream fetches, time to first byte",
			Run:     runColdStorm,
		},
		{
			Name:    "warm-small",
			Summary: "warm .info/.mod at 64 connections over TLS with token auth, policy and audit: req/s and latency vs Go's bare file server and nginx on the same files",
			Run:     runWarmSmall,
		},
		{
			Name:    "warm-small-h2",
			Summary: "warm .info/.mod over HTTP/2 (h2load, 16 connections × 8 streams), same setup: req/s vs Go's bare file server and nginx over h2",
			Run:     runWarmSmallH2,
		},
		{
			Name:    "warm-zips",
			Summary: "warm .zip of the download-all graph at 64 connections, same setup: MB/s vs nginx",
			Run:     runWarmZips,
		},
		{
			Name:    "audit-cost",
			Summary: "warm .info/.mod latency with audit (PostgreSQL, tokens) on vs off",
			Run:     runAuditCost,
		},
		{
			Name:    "policy",
			Summary: "policy decision p50/p99, cache hit and miss, shipped policy and a 1,000-team/10,000-prefix one (internal/policy BenchmarkDecide)",
			Run:     runPolicy,
		},
		{
			Name:    "audit",
			Summary: "sustained audit events/s into PostgreSQL (internal/audit BenchmarkWriterThroughput)",
			Run:     runAudit,
		},
		{
			Name:    "memory",
			Summary: "modgate's peak RSS with 256 concurrent downloads of a 50 MB zip over TLS, cold and warm",
			Run:     runMemory,
		},
	}
}

// Env is what a scenario runs with: the configuration and a logger, plus a scratch
// directory of its own.
type Env struct {
	Config
	Log *slog.Logger
	// Dir is the scenario's scratch directory inside WorkDir.
	Dir string
}

// Run runs the selected scenarios in order and returns the report. A scenario that
// fails is recorded in the report and the others still run; the returned error
// says that at least one failed.
func Run(ctx context.Context, cfg Config, log *slog.Logger) (*Report, error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	rep := &Report{Started: time.Now().UTC(), Machine: describeMachine(ctx, cfg)}
	var failed []string
	for _, sc := range Scenarios() {
		if cfg.Match != nil && !cfg.Match.MatchString(sc.Name) {
			continue
		}
		dir := filepath.Join(cfg.WorkDir, sc.Name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
		log.Info("scenario", "name", sc.Name, "summary", sc.Summary)
		start := time.Now()
		results, err := sc.Run(ctx, &Env{Config: cfg, Log: log.With("scenario", sc.Name), Dir: dir})
		sr := ScenarioReport{Name: sc.Name, Summary: sc.Summary, Seconds: time.Since(start).Seconds(), Results: results}
		if err != nil {
			sr.Error = err.Error()
			failed = append(failed, sc.Name)
			log.Error("scenario failed", "name", sc.Name, "err", err)
		}
		rep.Scenarios = append(rep.Scenarios, sr)
		if !cfg.KeepWork {
			removeAll(dir)
		}
		if ctx.Err() != nil {
			return rep, ctx.Err()
		}
	}
	if len(rep.Scenarios) == 0 {
		return rep, errors.New("bench: no scenario matches")
	}
	if len(failed) > 0 {
		return rep, fmt.Errorf("bench: scenarios failed: %v", failed)
	}
	return rep, nil
}
