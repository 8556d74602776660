package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/mirror"
	"github.com/modgate/modgate/internal/route"
	"github.com/modgate/modgate/internal/storage"
)

const bundleUsage = `usage: modgate bundle export --out FILE (--modules LIST | --since DATE | --all) [--cache-dir DIR] [--config FILE]
       modgate bundle import [--cache-dir DIR] [--config FILE] FILE

Moves cached modules into a network with no outside link (docs/mirror.md).

export writes the cached .info/.mod/.zip/list objects of the selected modules,
and the cached checksum database data, into one .tar.zst or .tar.gz with a JSON
manifest of every object's SHA-256 and every module version's h1: hashes.

import verifies everything first — sizes, SHA-256, zip and go.mod h1: hashes, and
the checksum database records carried in the bundle — into a staging directory,
and installs only a bundle that passes entirely: one altered byte rejects it
whole. Importing the same bundle again changes nothing.

Both print a JSON summary line, and record an audit event (bundle-export,
bundle-import) when a database is configured.
`

func runBundle(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stdout, bundleUsage)
		if len(args) == 0 {
			return errors.New("bundle: want export or import")
		}
		return flag.ErrHelp
	}
	switch args[0] {
	case "export":
		return runBundleExport(ctx, args[1:], stdout, stderr)
	case "import":
		return runBundleImport(ctx, args[1:], stdout, stderr)
	}
	return fmt.Errorf("bundle: unknown subcommand %q: want export or import", args[0])
}

type bundleFlags struct {
	configPath, cacheDir string
}

func (bf *bundleFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&bf.configPath, "config", "", "modgate configuration (cache.dir, database for the audit event)")
	fs.StringVar(&bf.cacheDir, "cache-dir", "", "cache directory (default: cache.dir of --config)")
}

func (bf *bundleFlags) load() (config.Config, error) {
	cfg, err := config.Load(bf.configPath)
	if err != nil {
		return cfg, err
	}
	if bf.cacheDir != "" {
		cfg.Cache.Dir = bf.cacheDir
	}
	return cfg, nil
}

func bundleFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("modgate bundle "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), bundleUsage, "\nFlags:\n"); fs.PrintDefaults() }
	return fs
}

func runBundleExport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := bundleFlagSet("export", stderr)
	var bf bundleFlags
	bf.register(fs)
	out := fs.String("out", "", "bundle file to write: NAME.tar.zst or NAME.tar.gz")
	var modules stringList
	fs.Var(&modules, "modules", "module paths (every cached version) or path@version, comma-separated or repeated")
	since := fs.String("since", "", "only objects cached since this date (2006-01-02 or RFC 3339)")
	all := fs.Bool("all", false, "everything cached")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *out == "" {
		return errors.New("bundle export: --out is required")
	}
	if !*all && len(modules) == 0 && *since == "" {
		return errors.New("bundle export: choose --modules, --since or --all")
	}
	if *all && (len(modules) > 0 || *since != "") {
		return errors.New("bundle export: --all excludes --modules and --since")
	}
	opts := mirror.ExportOptions{Modules: modules}
	if *since != "" {
		t, err := parseDate(*since)
		if err != nil {
			return err
		}
		opts.Since = t
	}
	cfg, err := bf.load()
	if err != nil {
		return err
	}
	// The router's answer to "is this path private?", the same as the server's.
	router := route.New(cfg.Private.AllPatterns(), nil)
	opts.Private = func(p string) bool { return router.Of(p).Private() }
	sum, err := mirror.Export(ctx, cfg.Cache.Dir, *out, opts)
	line := map[string]any{"action": "bundle-export", "bundle": *out, "ok": err == nil, "objects": sum.Objects, "modules": sum.Modules, "bytes": sum.Bytes}
	if err != nil {
		line["error"] = err.Error()
	}
	json.NewEncoder(stdout).Encode(line)
	auditBundle(ctx, cfg, "bundle-export", *out, err, stderr)
	return err
}

func runBundleImport(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := bundleFlagSet("import", stderr)
	var bf bundleFlags
	bf.register(fs)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return errors.New("bundle import: want exactly one bundle file")
	}
	cfg, err := bf.load()
	if err != nil {
		return err
	}
	store, err := storage.NewDisk(cfg.Cache.Dir)
	if err != nil {
		return err
	}
	sum, err := mirror.Import(ctx, store, pos[0])
	line := map[string]any{"action": "bundle-import", "bundle": pos[0], "ok": err == nil, "objects": sum.Objects, "installed": sum.Installed, "unchanged": sum.Unchanged, "modules": sum.Modules, "sumdb_checked": sum.SumDBChecked}
	if err != nil {
		line["error"] = err.Error()
	}
	json.NewEncoder(stdout).Encode(line)
	auditBundle(ctx, cfg, "bundle-import", pos[0], err, stderr)
	return err
}

func parseDate(s string) (time.Time, error) {
	if t, err := time.Parse(time.RFC3339, s); err == nil {
		return t, nil
	}
	t, err := time.ParseInLocation("2006-01-02", s, time.UTC)
	if err != nil {
		return time.Time{}, fmt.Errorf("--since %q: want 2006-01-02 or RFC 3339", s)
	}
	return t, nil
}

// auditBundle records the operation in the audit trail when a database is
// configured. The CLI has no request and no verified identity: the subject is the
// operating-system user who ran it. A failure to record is reported, not fatal —
// the bundle operation has already happened and its JSON line is on stdout.
func auditBundle(ctx context.Context, cfg config.Config, action, bundle string, opErr error, stderr io.Writer) {
	dbURL, err := cfg.DatabaseURL()
	if err != nil || dbURL == "" {
		return
	}
	fail := func(err error) { fmt.Fprintf(stderr, "modgate: %s: recording the audit event: %v\n", action, err) }
	pool, err := database.Open(ctx, dbURL)
	if err != nil {
		fail(err)
		return
	}
	defer pool.Close()
	// Its own spool under the server's: an event PostgreSQL does not take now is
	// shipped by the next CLI run, and never mixes with a running server's chain.
	spool := filepath.Join(cfg.AuditSpoolDir(), "cli")
	if err := os.MkdirAll(spool, 0o700); err != nil {
		fail(err)
		return
	}
	host, _ := os.Hostname()
	w, err := audit.NewWriter(ctx, audit.WriterConfig{
		WriterID: "cli-" + host, Replica: cfg.Replica, SpoolDir: spool, MaintenanceInterval: -1,
	}, pool, slog.New(slog.DiscardHandler), nil)
	if err != nil {
		fail(err)
		return
	}
	ev := audit.Event{Action: audit.Action(action), Subject: osUser(), AuthMethod: "cli", Outcome: audit.OutcomeServed, Source: bundle}
	if opErr != nil {
		ev.Outcome, ev.Reason = audit.OutcomeError, opErr.Error()
	}
	if err := w.Record(ev); err != nil {
		fail(err)
	}
	cctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Close(cctx); err != nil {
		fail(err)
	}
}

func osUser() string {
	for _, k := range []string{"SUDO_USER", "USER", "LOGNAME"} {
		if v := strings.TrimSpace(os.Getenv(k)); v != "" {
			return v
		}
	}
	return "unknown"
}
