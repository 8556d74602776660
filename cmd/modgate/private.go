package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/storage"
	"github.com/modgate/modgate/internal/storage/s3store"
)

const privateUsage = `usage: modgate private verify [--config FILE] [--database-url URL] [--cache-dir DIR] [--no-objects]

Checks the private version ledger (docs/private-modules.md): the go.mod and zip
h1: hashes pinned the first time each private module version was served.

verify recomputes the ledger's hash chain and names every pin that was altered
or deleted; then, with the cache and storage of --config, hashes every stored
copy of a pinned file (served from git or published) and names each one that
no longer matches its pin. Copies not in the store are skipped. Prints one
problem a line and exits non-zero if there is any.

The database is --database-url, else database.url / url_file of --config, else
$MODGATE_DATABASE_URL.
`

// runPrivate implements `modgate private`.
func runPrivate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, privateUsage)
		if len(args) == 0 {
			return errors.New("private: missing command (verify)")
		}
		return nil
	}
	if args[0] != "verify" {
		fmt.Fprint(stderr, privateUsage)
		return fmt.Errorf("private: unknown command %q", args[0])
	}
	fs := flag.NewFlagSet("modgate private verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(stderr, privateUsage, "\nflags:\n"); fs.PrintDefaults() }
	configPath := fs.String("config", "", "modgate configuration (database, cache.dir, storage)")
	dbURL := fs.String("database-url", "", "PostgreSQL URL (default: the configuration's, else $MODGATE_DATABASE_URL)")
	cacheDir := fs.String("cache-dir", "", "cache directory (default: cache.dir of --config)")
	noObjects := fs.Bool("no-objects", false, "check the chain only, not the stored copies")
	if err := fs.Parse(args[1:]); err != nil {
		return flagErr(err)
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("private verify: unexpected arguments %q", fs.Args())
	}
	cfg, err := config.Load(*configPath)
	if err != nil {
		return err
	}
	if *cacheDir != "" {
		cfg.Cache.Dir = *cacheDir
	}
	if *dbURL == "" {
		if *dbURL, err = cfg.DatabaseURL(); err != nil {
			return err
		}
	}
	if *dbURL == "" {
		return errors.New("private verify: no database: pass --database-url, --config or set MODGATE_DATABASE_URL")
	}
	pool, err := database.Open(ctx, *dbURL)
	if err != nil {
		return fmt.Errorf("private verify: %w", err)
	}
	defer pool.Close()
	quiet := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelError}))
	l := ledger.New(pool, ledger.WithLogger(quiet), ledger.WithCacheSize(0))

	rep, err := l.Verify(ctx)
	if err != nil {
		return fmt.Errorf("private verify: %w", err)
	}
	problems := rep.Problems
	checked := 0
	if !*noObjects {
		store, err := openStore(cfg)
		if err != nil {
			return fmt.Errorf("private verify: %w", err)
		}
		reg := publish.NewRegistry(pool, store, quiet)
		var objProblems []ledger.Problem
		checked, objProblems, err = l.CheckStored(ctx, store, storedCopies(reg))
		if err != nil {
			return fmt.Errorf("private verify: %w", err)
		}
		problems = append(problems, objProblems...)
	}
	for _, p := range problems {
		fmt.Fprintln(stdout, p)
	}
	if len(problems) > 0 {
		return fmt.Errorf("private verify: %d problem(s) in %d pins", len(problems), rep.Rows)
	}
	fmt.Fprintf(stdout, "ok: %d pins, chain intact to seq %d, %d stored copies match their pins\n", rep.Rows, rep.LastSeq, checked)
	return nil
}

// storedCopies locates the copies of a pinned file the server may serve: the
// cache's git-sourced copy (private/...), a copy cached on the public layout
// (mod/...), and the published objects the publish registry names.
func storedCopies(reg *publish.Registry) ledger.Locate {
	return func(ctx context.Context, e ledger.Entry) ([]string, error) {
		var keys []string
		for _, prefix := range []string{"private/", "mod/"} {
			k, err := ledger.ObjectKey(prefix, e)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		}
		v, err := reg.Get(ctx, e.Module, e.Version)
		switch {
		case errors.Is(err, derrors.NotFound):
		case err != nil:
			return nil, err
		case e.File == ledger.Zip:
			keys = append(keys, v.ZipKey)
		default:
			keys = append(keys, v.ModKey)
		}
		return keys, nil
	}
}

// openStore opens the configured object store read-only in effect (nothing is
// written), as the server does (internal/app).
func openStore(cfg config.Config) (storage.Store, error) {
	if cfg.Storage.Backend != "s3" {
		return storage.NewDisk(cfg.Cache.Dir)
	}
	s3 := cfg.Storage.S3
	ak, sk, err := cfg.S3Credentials()
	if err != nil {
		return nil, err
	}
	return s3store.New(s3store.Config{
		Endpoint: s3.Endpoint, Bucket: s3.Bucket, Prefix: s3.Prefix, Region: s3.Region,
		AccessKey: ak, SecretKey: sk, PathStyle: s3.PathStyle, Insecure: s3.Insecure, CAFile: s3.CAFile,
		ScratchDir: filepath.Join(os.TempDir(), "modgate-private-verify"),
	})
}
