package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/modgate/modgate/internal/database"
)

const migrateUsage = `usage: modgate migrate up|status [--config FILE | --database-url URL]

  up       apply every migration in migrations/ not yet applied
  status   list migrations and when each was applied

The database: --database-url URL, else the one --config FILE (or $MODGATE_CONFIG)
names, found as 'modgate serve' finds it, else $MODGATE_DATABASE_URL.
`

// runMigrate implements `modgate migrate`.
func runMigrate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("migrate", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDatabaseFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, migrateUsage)
		fs.PrintDefaults()
	}
	if len(args) == 0 {
		fs.Usage()
		return errors.New("migrate: missing subcommand")
	}
	sub, rest := args[0], args[1:]
	if sub == "-h" || sub == "--help" || sub == "help" {
		fs.Usage()
		return nil
	}
	if err := fs.Parse(rest); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return fmt.Errorf("migrate: unexpected arguments %q", fs.Args())
	}
	if sub != "up" && sub != "status" {
		fs.Usage()
		return fmt.Errorf("migrate: unknown subcommand %q (want up or status)", sub)
	}
	dbURL, err := db.resolve()
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}

	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	pool, err := database.Open(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer pool.Close()

	switch sub {
	case "up":
		applied, err := database.Migrate(ctx, pool)
		for _, name := range applied {
			fmt.Fprintf(stdout, "applied %s\n", name)
		}
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		if len(applied) == 0 {
			fmt.Fprintln(stdout, "schema is up to date")
		}
	case "status":
		ms, err := database.Status(ctx, pool)
		if err != nil {
			return fmt.Errorf("migrate: %w", err)
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "VERSION\tNAME\tAPPLIED")
		for _, m := range ms {
			at := "pending"
			if m.AppliedAt != nil {
				at = m.AppliedAt.UTC().Format(time.RFC3339)
			}
			fmt.Fprintf(tw, "%04d\t%s\t%s\n", m.Version, m.Name, at)
		}
		return tw.Flush()
	}
	return nil
}
