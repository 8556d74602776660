package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/database"
)

const auditUsage = `usage: modgate audit <command> [flags]

commands:
  query          list audit events matching filters, newest first
  verify         check the hash chains; exits non-zero if a row was altered
  who-pulled M@V who pulled module M at version V (M alone: any version)
  team-pulls T   what team T pulled (--since 90d)
  affected ID    who pulled versions advisory ID affects, and who has not pulled a fix since

Every command finds the database the same way: --database-url URL, else the one
--config FILE (or $MODGATE_CONFIG) names, found as 'modgate serve' finds it, else
$MODGATE_DATABASE_URL.
Run 'modgate audit <command> --help' for its flags.
`

// runAudit implements `modgate audit`.
func runAudit(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, auditUsage)
		return errors.New("audit: missing command")
	}
	switch args[0] {
	case "-h", "--help", "help":
		fmt.Fprint(stderr, auditUsage)
		return nil
	case "query":
		return auditQuery(ctx, args[1:], stdout, stderr)
	case "verify":
		return auditVerify(ctx, args[1:], stdout, stderr)
	case "who-pulled":
		return auditWhoPulled(ctx, args[1:], stdout, stderr)
	case "team-pulls":
		return auditTeamPulls(ctx, args[1:], stdout, stderr)
	case "affected":
		return auditAffected(ctx, args[1:], stdout, stderr)
	}
	fmt.Fprint(stderr, auditUsage)
	return fmt.Errorf("audit: unknown command %q", args[0])
}

// outputFlags are shared by the commands that print rows.
type outputFlags struct {
	db     dbFlags
	format *string
	limit  *int
	all    *bool
	cursor *string
}

func newAuditFlags(name, usage string, stderr io.Writer) (*flag.FlagSet, outputFlags) {
	fs := flag.NewFlagSet("audit "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(stderr, "usage: modgate audit %s\n\nflags:\n", usage)
		fs.PrintDefaults()
	}
	o := outputFlags{
		db:     addDatabaseFlags(fs),
		format: fs.String("format", "table", "output format: table, json (one object per line) or csv"),
		limit:  fs.Int("limit", 100, "rows per page"),
		all:    fs.Bool("all", false, "print every page, not just the first"),
		cursor: fs.String("cursor", "", "continue after a previous page (printed to stderr)"),
	}
	return fs, o
}

func auditQuery(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := newAuditFlags("query", "query [flags]", stderr)
	module := fs.String("module", "", "module path, or a glob with * (github.com/acme/*)")
	version := fs.String("version", "", "module version")
	subject := fs.String("subject", "", "caller subject")
	team := fs.String("team", "", "caller team")
	action := fs.String("action", "", "comma-separated actions: "+joinEnum(audit.Actions))
	outcome := fs.String("outcome", "", "comma-separated outcomes: "+joinEnum(audit.Outcomes))
	since := fs.String("since", "", "start: a duration back from now (90d, 12h) or a date/RFC 3339 time")
	until := fs.String("until", "", "end (exclusive), same forms as --since")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) > 0 {
		return fmt.Errorf("audit query: unexpected arguments %q", pos)
	}
	f := audit.Filter{Module: *module, Version: *version, Subject: *subject, Team: *team}
	if f.Actions, err = enumList("audit query: --action", *action, audit.Actions); err != nil {
		return err
	}
	if f.Outcomes, err = enumList("audit query: --outcome", *outcome, audit.Outcomes); err != nil {
		return err
	}
	if f.Since, err = audit.ParseTimeBound(*since, time.Now()); err != nil {
		return fmt.Errorf("audit query: --since: %w", err)
	}
	if f.Until, err = audit.ParseTimeBound(*until, time.Now()); err != nil {
		return fmt.Errorf("audit query: --until: %w", err)
	}
	return printRows(ctx, o, f, stdout, stderr)
}

func auditWhoPulled(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := newAuditFlags("who-pulled", "who-pulled MODULE[@VERSION] [flags]", stderr)
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("audit who-pulled: want one MODULE[@VERSION]")
	}
	module, version, _ := strings.Cut(pos[0], "@")
	return printRows(ctx, o, audit.WhoPulled(module, version), stdout, stderr)
}

func auditTeamPulls(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := newAuditFlags("team-pulls", "team-pulls TEAM [--since 90d] [flags]", stderr)
	since := fs.String("since", "90d", "start: a duration back from now (90d, 12h) or a date/RFC 3339 time")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return flagErr(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("audit team-pulls: want one TEAM")
	}
	t, err := audit.ParseTimeBound(*since, time.Now())
	if err != nil {
		return fmt.Errorf("audit team-pulls: --since: %w", err)
	}
	return printRows(ctx, o, audit.TeamPulls(pos[0], t), stdout, stderr)
}

func auditVerify(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDatabaseFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, "usage: modgate audit verify [--config FILE | --database-url URL]\n\nRecomputes every writer's hash chain and names the first altered, missing or reordered row.\n\nflags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return flagErr(err)
	}
	pool, err := openAuditDB(ctx, db)
	if err != nil {
		return err
	}
	defer pool.Close()
	rep, err := audit.Verify(ctx, pool)
	if err != nil {
		return err
	}
	for _, c := range rep.Chains {
		status := "ok"
		if c.Problem != nil {
			status = "FAILED: " + c.Problem.String()
		}
		fmt.Fprintf(stdout, "chain %s: %d rows, seq %d..%d: %s\n", c.ChainID, c.Rows, c.FirstSeq, c.LastSeq, status)
	}
	if !rep.OK() {
		return fmt.Errorf("audit verify: %d chain(s) failed verification", len(rep.Problems()))
	}
	fmt.Fprintf(stdout, "verified %d rows in %d chains\n", rep.Rows, len(rep.Chains))
	return nil
}

func openAuditDB(ctx context.Context, db dbFlags) (interface {
	audit.DB
	Close()
}, error) {
	url, err := db.resolve()
	if err != nil {
		return nil, fmt.Errorf("audit: %w", err)
	}
	pool, err := database.Open(ctx, url)
	if err != nil {
		database.MarkUnavailable(&err, "cannot read the audit trail now")
		return nil, fmt.Errorf("audit: %w", err)
	}
	return pool, nil
}

func printRows(ctx context.Context, o outputFlags, f audit.Filter, stdout, stderr io.Writer) error {
	switch *o.format {
	case audit.FormatTable, audit.FormatJSON, audit.FormatCSV:
	default:
		return fmt.Errorf("audit: unknown --format %q (want table, json or csv)", *o.format)
	}
	db, err := openAuditDB(ctx, o.db)
	if err != nil {
		return err
	}
	defer db.Close()
	f.Limit, f.Cursor = *o.limit, *o.cursor
	for page := 0; ; page++ {
		rows, next, err := audit.Query(ctx, db, f)
		if err != nil {
			return err
		}
		if err := audit.Write(stdout, *o.format, rows, page == 0); err != nil {
			return err
		}
		if next == "" {
			return nil
		}
		if !*o.all {
			fmt.Fprintf(stderr, "more rows: --cursor %s (or --all)\n", next)
			return nil
		}
		f.Cursor = next
	}
}

func flagErr(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}
