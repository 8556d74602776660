// Command modgate is an authenticated enterprise Go module proxy. See README.md.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"syscall"
)

type command struct {
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
	summary string
}

var commands = map[string]command{
	"agent":   {runAgent, "local forwarder that presents this machine's client certificate to modgate"},
	"audit":   {runAudit, "query and verify the audit trail (audit query|verify|who-pulled|team-pulls)"},
	"auth":    {runAuth, "GOAUTH helper: print Authorization headers for the go command"},
	"login":   {runLogin, "sign in with OIDC (device flow) and write the token to ~/.netrc"},
	"bundle":  {runBundle, "export / import verified module bundles for air-gapped networks (bundle export|import)"},
	"certs":   {runCerts, "create development certificates (certs init)"},
	"delete":  {runDelete, "delete a published version (admins): 410 Gone forever"},
	"migrate": {runMigrate, "apply or show database migrations (migrate up|status)"},
	"publish": {runPublish, "publish a private module version from a directory"},
	"policy":  {runPolicy, "check, test and explain the Rego policy (policy check|test|explain)"},
	"private": {runPrivate, "check the private version ledger and the stored copies it pins (private verify)"},
	"serve":   {runServe, "run the proxy server"},
	"sync":    {runSync, "pre-warm the cache from go.sum files or module lists, through a running modgate"},
	"token":   {runToken, "create, list and revoke API tokens (token create|list|revoke)"},
	"version": {runVersion, "print the version"},
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if err != nil {
		if !errors.Is(err, flag.ErrHelp) {
			fmt.Fprintln(os.Stderr, "modgate:", err)
		}
		var ec exitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		os.Exit(1)
	}
}

// exitCoder lets a subcommand choose its exit status (policy test failures: 2).
type exitCoder interface{ ExitCode() int }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		usage(stdout)
		if len(args) == 0 {
			return errors.New("no command given")
		}
		return nil
	}
	cmd, ok := commands[args[0]]
	if !ok {
		usage(stderr)
		return fmt.Errorf("unknown command %q", args[0])
	}
	return cmd.run(ctx, args[1:], stdout, stderr)
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "modgate — authenticated enterprise Go module proxy")
	fmt.Fprintln(w, "\nUsage: modgate <command> [flags]   (modgate <command> --help for its flags)")
	fmt.Fprintln(w, "\nCommands:")
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
}

// newFlagSet returns a flag set that reports errors instead of exiting and prints
// its usage, with a one-line summary, on --help.
func newFlagSet(name, summary string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("modgate "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: modgate %s [flags]\n\n%s\n\nFlags:\n", name, summary)
		fs.PrintDefaults()
	}
	return fs
}

// parseInterspersed parses flags before and after positional arguments
// ("token revoke ID --database-url U", "audit who-pulled M@V --since 90d"), which
// flag.Parse alone stops at, and returns the positional arguments.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}
