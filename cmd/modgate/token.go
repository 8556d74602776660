package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/user"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/login"
	"github.com/modgate/modgate/internal/tokens"
)

const tokenUsage = `usage: modgate token create|list|revoke [flags]

  create --subject S [--team T]... [--scope S]... [--ttl 720h] [--description D]
         [--proxy-url URL] [--secret-only]
         create an API token and print its secret, once: only its hash is kept
  list [--subject S] [--all]
         list tokens (never their secrets); --all includes revoked and expired ones
  revoke ID
         revoke a token by id (or by its whole secret, if that is what leaked);
         every replica refuses it within seconds

Scopes: pull, publish, delete, audit.read, admin; none means every right of the
subject. --team and --scope repeat or take comma-separated lists.
The database: --database-url URL, else the one --config FILE (or $MODGATE_CONFIG)
names, found as 'modgate serve' finds it, else $MODGATE_DATABASE_URL.
`

// runToken implements `modgate token`.
func runToken(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, tokenUsage)
		return errors.New("token: missing subcommand")
	}
	sub, rest := args[0], args[1:]
	switch sub {
	case "-h", "--help", "help":
		fmt.Fprint(stderr, tokenUsage)
		return nil
	case "create":
		return runTokenCreate(ctx, rest, stdout, stderr)
	case "list":
		return runTokenList(ctx, rest, stdout, stderr)
	case "revoke":
		return runTokenRevoke(ctx, rest, stdout, stderr)
	}
	fmt.Fprint(stderr, tokenUsage)
	return fmt.Errorf("token: unknown subcommand %q", sub)
}

// tokenFlags is the flag set every token subcommand starts from.
func tokenFlags(name string, stderr io.Writer) (*flag.FlagSet, dbFlags) {
	fs := flag.NewFlagSet("token "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	db := addDatabaseFlags(fs)
	fs.Usage = func() {
		fmt.Fprint(stderr, tokenUsage)
		fmt.Fprintf(stderr, "\nflags of token %s:\n", name)
		fs.PrintDefaults()
	}
	return fs, db
}

// tokenListFlag collects a repeatable flag; each value may also be comma-separated.
type tokenListFlag []string

func (l *tokenListFlag) String() string { return strings.Join(*l, ",") }

func (l *tokenListFlag) Set(v string) error {
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func openTokenStore(ctx context.Context, db dbFlags) (*tokens.Store, func(), error) {
	dbURL, err := db.resolve()
	if err != nil {
		return nil, nil, err
	}
	pool, err := database.Open(ctx, dbURL)
	if err != nil {
		database.MarkUnavailable(&err, "cannot administer API tokens now")
		return nil, nil, err
	}
	s, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		pool.Close()
		return nil, nil, err
	}
	return s, pool.Close, nil
}

// tokenOperator names who runs the command, for created_by and revoked_by.
func tokenOperator() string {
	if u, err := user.Current(); err == nil && u.Username != "" {
		return u.Username
	}
	return os.Getenv("USER")
}

// tokenFinish turns a flag or usage error into the command's error, treating a help
// request as success.
func tokenFinish(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return nil
	}
	return err
}

func runTokenCreate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dbURL := tokenFlags("create", stderr)
	var teams, scopes tokenListFlag
	subject := fs.String("subject", "", "whom the token authenticates as, e.g. ci-payments (required)")
	fs.Var(&teams, "team", "team the subject acts for (repeatable)")
	fs.Var(&scopes, "scope", "limit the token to this action: pull, publish, delete, audit.read, admin (repeatable; none: all the subject's rights)")
	ttl := fs.Duration("ttl", 720*time.Hour, "lifetime; 0 for a token that never expires")
	description := fs.String("description", "", "what the token is for, e.g. 'CI for payments-api'")
	createdBy := fs.String("created-by", tokenOperator(), "who creates it, for the record")
	proxyURL := fs.String("proxy-url", "", "modgate URL as used in GOPROXY; prints the .netrc line to use")
	secretOnly := fs.Bool("secret-only", false, "print only the secret (for scripts)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return tokenFinish(err)
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("token create: unexpected arguments %q", pos)
	}
	machine := ""
	if *proxyURL != "" {
		if machine, err = login.Machine(*proxyURL); err != nil {
			return fmt.Errorf("token create: %w", err)
		}
	}
	req := tokens.CreateRequest{
		Subject: *subject, Teams: teams, Scopes: scopes, TTL: *ttl,
		Description: *description, CreatedBy: *createdBy,
	}
	if err := req.Validate(); err != nil {
		return fmt.Errorf("token create: %s", derrors.PublicMessage(err))
	}

	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	store, closeStore, err := openTokenStore(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	defer closeStore()
	secret, tok, err := store.Create(ctx, req)
	if err != nil {
		return fmt.Errorf("token create: %w", err)
	}
	if *secretOnly {
		fmt.Fprintln(stdout, secret)
		return nil
	}
	fmt.Fprintf(stdout, "Created API token %s. Its secret is shown only now; modgate keeps only a hash:\n\n", tok.ID)
	fmt.Fprintf(stdout, "    %s\n\n", secret)
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "subject:\t%s\n", tok.Subject)
	fmt.Fprintf(tw, "teams:\t%s\n", tokenOrNone(strings.Join(tok.Teams, ", "), "none"))
	fmt.Fprintf(tw, "scopes:\t%s\n", tokenOrNone(strings.Join(tok.Scopes, ", "), "all of the subject's rights"))
	fmt.Fprintf(tw, "expires:\t%s\n", tokenTime(tok.ExpiresAt, "never"))
	if err := tw.Flush(); err != nil {
		return err
	}
	if machine != "" {
		fmt.Fprintf(stdout, "\nFor the go command, add this line to ~/.netrc (mode 0600) or the CI's $NETRC file:\n\n")
		fmt.Fprintf(stdout, "    machine %s login token password %s\n\n", machine, secret)
		fmt.Fprintf(stdout, "and set: %s\n", login.Advice(*proxyURL, ""))
	}
	return nil
}

func runTokenList(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dbURL := tokenFlags("list", stderr)
	subject := fs.String("subject", "", "only this subject's tokens")
	all := fs.Bool("all", false, "include revoked and expired tokens")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return tokenFinish(err)
	}
	if len(pos) > 0 {
		fs.Usage()
		return fmt.Errorf("token list: unexpected arguments %q", pos)
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	store, closeStore, err := openTokenStore(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	defer closeStore()
	toks, err := store.List(ctx, tokens.ListFilter{Subject: *subject, IncludeInactive: *all})
	if err != nil {
		return fmt.Errorf("token list: %w", err)
	}
	now := time.Now()
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSUBJECT\tTEAMS\tSCOPES\tCREATED\tEXPIRES\tREVOKED\tLAST USED\tSTATE\tDESCRIPTION")
	for _, t := range toks {
		revoked := "-"
		if t.RevokedAt != nil {
			revoked = tokenTime(t.RevokedAt, "") + " by " + tokenOrNone(t.RevokedBy, "?")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n",
			t.ID, t.Subject,
			tokenOrNone(strings.Join(t.Teams, ","), "-"),
			tokenOrNone(strings.Join(t.Scopes, ","), "all"),
			tokenTime(&t.CreatedAt, ""), tokenTime(t.ExpiresAt, "never"), revoked,
			tokenTime(t.LastUsedAt, "never"), t.State(now), t.Description)
	}
	return tw.Flush()
}

func runTokenRevoke(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dbURL := tokenFlags("revoke", stderr)
	by := fs.String("by", tokenOperator(), "who revokes it, for the record")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return tokenFinish(err)
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("token revoke: give exactly one token id")
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	store, closeStore, err := openTokenStore(ctx, dbURL)
	if err != nil {
		return fmt.Errorf("token revoke: %w", err)
	}
	defer closeStore()
	tok, err := store.Revoke(ctx, pos[0], *by)
	switch {
	case errors.Is(err, derrors.Conflict):
		fmt.Fprintf(stdout, "API token %s was already revoked at %s by %s\n", tok.ID, tokenTime(tok.RevokedAt, ""), tokenOrNone(tok.RevokedBy, "?"))
		return nil
	case errors.Is(err, derrors.NotFound), errors.Is(err, derrors.InvalidArgument):
		// The public message; the argument itself is not echoed, it may be a secret.
		return fmt.Errorf("token revoke: %s", derrors.PublicMessage(err))
	case err != nil:
		return fmt.Errorf("token revoke: %w", err)
	}
	fmt.Fprintf(stdout, "Revoked API token %s (subject %s); every modgate replica refuses it within seconds.\n", tok.ID, tok.Subject)
	return nil
}

func tokenOrNone(s, none string) string {
	if s == "" {
		return none
	}
	return s
}

func tokenTime(t *time.Time, none string) string {
	if t == nil {
		return none
	}
	return t.UTC().Format(time.RFC3339)
}
