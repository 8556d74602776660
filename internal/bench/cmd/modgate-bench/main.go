// Command modgate-bench runs modgate's benchmark scenarios and writes the report.
// `make bench` (through .ci/bench) is the way to run it; see docs/benchmarks.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"time"

	"github.com/modgate/modgate/internal/bench"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		fmt.Fprintln(os.Stderr, "modgate-bench:", err)
		if errors.Is(err, errMissedTarget) {
			os.Exit(2)
		}
		os.Exit(1)
	}
}

// errMissedTarget is returned under -strict when a figure misses its target.
var errMissedTarget = errors.New("a figure missed its target")

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modgate-bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: modgate-bench [flags]\n\nRun modgate's benchmark scenarios and write bench-results/. See docs/benchmarks.md.\n\nScenarios:\n")
		for _, s := range bench.Scenarios() {
			fmt.Fprintf(fs.Output(), "  %-14s %s\n", s.Name, s.Summary)
		}
		fmt.Fprintf(fs.Output(), "\nFlags:\n")
		fs.PrintDefaults()
	}
	userCache, err := os.UserCacheDir()
	if err != nil {
		userCache = os.TempDir()
	}
	var cfg bench.Config
	fs.StringVar(&cfg.Modgate, "modgate", "bin/modgate", "the modgate binary under test")
	fs.StringVar(&cfg.Graph, "graph", "testdata/bench/graph", "the benchmark module graph")
	fs.StringVar(&cfg.CacheDir, "cache-dir", filepath.Join(userCache, "modgate-bench"), "where the module graph is downloaded once per machine")
	fs.StringVar(&cfg.PopulateProxy, "populate-proxy", "https://proxy.golang.org", "GOPROXY the module graph is downloaded from, once")
	fs.StringVar(&cfg.PopulateSumDB, "populate-sumdb", "sum.golang.org", "GOSUMDB for that download (go.sum already holds every hash)")
	fs.StringVar(&cfg.WorkDir, "work-dir", "", "scratch directory (default: a new temporary directory)")
	fs.BoolVar(&cfg.KeepWork, "keep-work", false, "keep the scratch directory (modgate logs, caches) afterwards")
	fs.StringVar(&cfg.ModCacheDir, "modcache-dir", "auto", "where the go command's fresh module caches go: a directory, \"work\" for the work directory, or \"auto\" for /dev/shm when it is a usable tmpfs and the work directory otherwise")
	fs.IntVar(&cfg.Runs, "runs", 9, "timed runs per side of each comparison")
	fs.IntVar(&cfg.LoadRuns, "load-runs", 5, "timed wrk runs per side of each warm comparison")
	fs.DurationVar(&cfg.LoadDuration, "load-duration", 4*time.Second, "length of each wrk run")
	fs.StringVar(&cfg.ProfileDir, "profile-dir", "", "write a CPU profile of modgate during the first timed load run of each warm scenario into this directory")
	fs.IntVar(&cfg.Warmup, "warmup", 1, "untimed runs per side before the timed ones")
	runPattern := fs.String("run", "", "run only the scenarios whose names match this regular expression")
	out := fs.String("out", "bench-results", "directory the JSON and markdown reports are written to")
	strict := fs.Bool("strict", false, "exit with status 2 when a figure misses its target")
	command := fs.String("command", "", "the command line to record in the report (default: modgate-bench and its flags)")
	quiet := fs.Bool("q", false, "log only warnings and errors, not each run")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	if *runPattern != "" {
		re, err := regexp.Compile(*runPattern)
		if err != nil {
			return fmt.Errorf("-run: %w", err)
		}
		cfg.Match = re
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		return err
	}
	cfg.Go = goBin
	switch cfg.ModCacheDir {
	case "auto":
		cfg.ModCacheDir = bench.DefaultModCacheDir()
	case "work":
		cfg.ModCacheDir = ""
	}
	for _, p := range []*string{&cfg.Modgate, &cfg.Graph, &cfg.CacheDir, &cfg.ModCacheDir, &cfg.ProfileDir} {
		if *p != "" {
			if *p, err = filepath.Abs(*p); err != nil {
				return err
			}
		}
	}
	if cfg.WorkDir == "" {
		if cfg.WorkDir, err = os.MkdirTemp("", "modgate-bench-"); err != nil {
			return err
		}
		if !cfg.KeepWork {
			defer os.RemoveAll(cfg.WorkDir)
		}
	} else if cfg.WorkDir, err = filepath.Abs(cfg.WorkDir); err != nil {
		return err
	}

	level := slog.LevelInfo
	if *quiet {
		level = slog.LevelWarn
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: level}))
	fmt.Fprintf(stderr, "modgate-bench: work directory %s\n", cfg.WorkDir)

	rep, runErr := bench.Run(ctx, cfg, log)
	if rep == nil {
		return runErr
	}
	rep.Command = *command
	if rep.Command == "" {
		rep.Command = strings.Join(append([]string{"modgate-bench"}, args...), " ")
	}
	rep.WriteMarkdown(stdout)
	path, err := rep.WriteFiles(*out)
	if err != nil {
		return errors.Join(runErr, err)
	}
	fmt.Fprintf(stdout, "\nreport: %s (and latest.md, latest.json)\n", path)
	if runErr != nil {
		return runErr
	}
	if *strict && rep.Failed() {
		return errMissedTarget
	}
	return nil
}
