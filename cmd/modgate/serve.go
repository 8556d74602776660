package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/server"
)

func runServe(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("serve", "Run the module proxy. Flags override the configuration file.", stderr)
	configPath := fs.String("config", "", "path to the YAML configuration file (see docs/config.md)")
	listen := fs.String("listen", "", "address to listen on (config: listen)")
	upstreamList := fs.String("upstream", "", "GOPROXY-style upstream list, e.g. https://a,https://b|https://c (config: upstream.proxies)")
	cacheDir := fs.String("cache-dir", "", "cache directory (config: cache.dir)")
	logLevel := fs.String("log-level", "", "debug, info, warn or error (config: log.level)")
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
	if *logLevel != "" {
		cfg.Log.Level = *logLevel
	}
	if err := cfg.Validate(); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log.Level)

	srv, err := server.New(server.Options{Config: cfg, Logger: log})
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return err
	}
	hs := srv.HTTPServer(cfg.Listen)
	scheme := "http"
	if cfg.TLSEnabled() {
		scheme = "https"
		hs.TLSConfig = srv.TLS().Config()
	}
	log.Info("modgate serving", "addr", ln.Addr().String(), "scheme", scheme, "upstream", cfg.UpstreamList(), "cache_dir", cfg.Cache.Dir)
	fmt.Fprintf(stdout, "modgate listening on %s://%s\n", scheme, ln.Addr())

	errc := make(chan error, 1)
	go func() {
		if scheme == "https" {
			errc <- hs.ServeTLS(ln, "", "")
		} else {
			errc <- hs.Serve(ln)
		}
	}()
	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	log.Info("shutting down", "timeout", cfg.Server.ShutdownTimeout.D().String())
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Server.ShutdownTimeout.D())
	defer cancel()
	if err := hs.Shutdown(sctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var l slog.Level
	_ = l.UnmarshalText([]byte(level))
	return slog.New(slog.NewJSONHandler(w, &slog.HandlerOptions{Level: l}))
}
