package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"

	"github.com/modgate/modgate/internal/certgen"
)

const certsUsage = `Usage: modgate certs init [flags]

Generate a development PKI: a CA, a server certificate for localhost, 127.0.0.1
and ::1, and one client certificate per team (OU=<team>, URI SAN
spiffe://<trust-domain>/team/<team>/<subject>). Keys are ECDSA P-256, written
with mode 0600. Existing files are kept unless --force; an existing CA is
reused, so running it again with a new --team only adds that team's files.
For development and tests only: production certificates come from your CA.

Flags:
`

// runCerts implements "modgate certs".
func runCerts(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" {
		fmt.Fprint(stderr, certsUsage)
		certsInitFlags(stderr, &certgen.InitOptions{}).PrintDefaults()
		return nil
	}
	if args[0] != "init" {
		return fmt.Errorf("certs: unknown subcommand %q (want: init)", args[0])
	}
	var opts certgen.InitOptions
	fs := certsInitFlags(stderr, &opts)
	if err := fs.Parse(args[1:]); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("certs init: unexpected arguments %q", fs.Args())
	}
	written, err := certgen.Init(opts)
	for _, w := range written {
		verb := "kept   "
		if w.Created {
			verb = "created"
		}
		fmt.Fprintf(stdout, "%s %s\n", verb, w.Path)
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nServe with %s/%s and %s/%s, trusting client certificates from %s/%s.\n",
		opts.Dir, certgen.ServerCertFile, opts.Dir, certgen.ServerKeyFile, opts.Dir, certgen.CACertFile)
	if len(opts.Teams) > 0 {
		team := opts.Teams[0]
		fmt.Fprintf(stdout, "Use a client certificate through the agent:\n  modgate agent --upstream https://localhost:8443 --cert %s/%s --key %s/%s --ca %s/%s\n",
			opts.Dir, certgen.ClientCertFile(team), opts.Dir, certgen.ClientKeyFile(team), opts.Dir, certgen.CACertFile)
	}
	fmt.Fprintln(stdout, "Private keys (*.key) must never be committed.")
	return nil
}

func certsInitFlags(out io.Writer, opts *certgen.InitOptions) *flag.FlagSet {
	fs := flag.NewFlagSet("modgate certs init", flag.ContinueOnError)
	fs.SetOutput(out)
	fs.Usage = func() {
		fmt.Fprint(out, certsUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&opts.Dir, "dir", "certs", "output `directory`")
	fs.Var((*certsListFlag)(&opts.Teams), "team", "issue a client certificate for `team` (repeatable)")
	fs.StringVar(&opts.Subject, "subject", "dev", "client certificates' subject common `name`")
	fs.Var((*certsListFlag)(&opts.Hosts), "host", "server certificate `name` or IP (repeatable; default localhost, 127.0.0.1, ::1)")
	fs.StringVar(&opts.TrustDomain, "trust-domain", "modgate.dev", "SPIFFE trust `domain` of the client certificates' URI")
	fs.BoolVar(&opts.Force, "force", false, "overwrite existing files, replacing the CA")
	return fs
}

// certsListFlag is a repeatable string flag.
type certsListFlag []string

func (l *certsListFlag) String() string { return strings.Join(*l, ",") }

func (l *certsListFlag) Set(v string) error {
	*l = append(*l, v)
	return nil
}
