package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"os"
	"time"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/gctune"
	"github.com/modgate/modgate/internal/logwriter"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "Run the module proxy. Flags override the configuration file.", stderr)
	configPath := fs.String("config", "", "path to the YAML configuration file (see docs/config.md)")
	listen := fs.String("listen", "", "address to listen on (config: listen)")
	upstreamList := fs.String("upstream", "", "GOPROXY-style upstream list, e.g. https://a,https://b|https://c (config: upstream.proxies)")
	cacheDir := fs.String("cache-dir", "", "cache directory (config: cache.dir)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (config: log.level)")
	anon := fs.Bool("anonymous", false, "admit requests without credentials; loopback development only (config: auth.anonymous)")
	pprofListen := fs.String("pprof-listen", "", "serve Go's /debug/pprof/ profiles on this loopback address (off by default; for profiling, never exposed)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *listen != "" {
		cfg.Listen = *listen
	}
	if *upstreamList != "" {
		cfg.Upstream.Proxies = *upstreamList
	}
	if *cacheDir != "" {
		cfg.Cache.Dir = *cacheDir
	}
	if *anon {
		cfg.Auth.Anonymous = true
	}
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	// The access log is one line per request; batching the lines saves a write(2)
	// per request (docs/benchmarks.md). They reach stderr within 100 ms, and all of
	// them before serve returns.
	logOut := logwriter.New(stderr, 100*time.Millisecond, 64<<10)
	defer logOut.Close()
	log := newLogger(logOut, cfg.Log.Level)
	if *pprofListen != "" {
		_, stopPprof, err := servePprof(*pprofListen, log)
		if err != nil {
			return err
		}
		defer stopPprof()
	}

	gc := gctune.Apply(os.Getenv, gctune.CgroupLimit)
	log.Info("garbage collector", "gogc", gc.Percent, "gogc_from", gc.PercentSource, "memory_limit", gc.LimitString(), "memory_limit_from", gc.LimitSource)

	a, err := app.New(ctx, cfg, log)
	if err != nil {
		return err
	}
	defer a.Close()
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	scheme := "http"
	if cfg.TLSEnabled() {
		scheme = "https"
	}
	log.Info("modgate serving", "addr", ln.Addr().String(), "scheme", scheme, "upstream", cfg.UpstreamList(), "cache_dir", cfg.Cache.Dir)
	fmt.Fprintf(stdout, "modgate listening on %s://%s\n", scheme, ln.Addr())
	return a.Serve(ctx, ln)
}

// servePprof serves the runtime profiles on a loopback address of their own, apart
// from the proxy's listener: profiles reveal memory contents and cost CPU, so they
// are opt-in and never reachable from another machine.
func servePprof(addr string, log *slog.Logger) (bound string, stop func(), err error) {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, fmt.Errorf("--pprof-listen: %w", err)
	}
	if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", nil, fmt.Errorf("--pprof-listen: %q is not a loopback address", addr)
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return "", nil, fmt.Errorf("--pprof-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	log.Info("pprof serving", "addr", ln.Addr().String())
	return ln.Addr().String(), func() { srv.Close() }, nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
