package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/config"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "Run the module proxy. Flags override the configuration file.", stderr)
	configPath := fs.String("config", "", "path to the YAML configuration file (see docs/config.md)")
	listen := fs.String("listen", "", "address to listen on (config: listen)")
	upstreamList := fs.String("upstream", "", "GOPROXY-style upstream list, e.g. https://a,https://b|https://c (config: upstream.proxies)")
	cacheDir := fs.String("cache-dir", "", "cache directory (config: cache.dir)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (config: log.level)")
	anon := fs.Bool("anonymous", false, "admit requests without credentials; loopback development only (config: auth.anonymous)")
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
	log := newLogger(stderr, cfg.Log.Level)

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

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
