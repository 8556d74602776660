package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/identity"
	"github.com/modgate/modgate/internal/policy"
)

const policyUsage = `usage: modgate policy <command> [flags]

The security team's tools for the Rego policy in the policy directory.

commands:
  check     parse, schema-check and compile the policy (no tests)
  test      run the policy's *_test.rego unit tests; exit status 1 if any fails
  explain   decide one request and print the decision with every reason

Run 'modgate policy <command> --help' for a command's flags.
`

// runPolicy implements `modgate policy`.
func runPolicy(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, policyUsage)
		return errors.New("policy: missing command")
	}
	switch args[0] {
	case "check":
		return runPolicyCheck(ctx, args[1:], stdout, stderr)
	case "test":
		return runPolicyTest(ctx, args[1:], stdout, stderr)
	case "explain":
		return runPolicyExplain(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, policyUsage)
		return nil
	}
	fmt.Fprint(stderr, policyUsage)
	return fmt.Errorf("policy: unknown command %q", args[0])
}

// policyFlags returns a flag set for a policy subcommand whose usage shows
// summary first.
func policyFlags(name, summary string, stderr io.Writer) (*flag.FlagSet, *string) {
	fs := flag.NewFlagSet("modgate policy "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	dir := fs.String("dir", "policy", "the policy directory")
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "usage: modgate policy %s\n\n", summary)
		fs.PrintDefaults()
	}
	return fs, dir
}

// parsePolicyFlags parses args. --help prints the usage to stdout and is not
// an error; a bad flag prints the usage to the flag set's output (stderr).
func parsePolicyFlags(fs *flag.FlagSet, args []string, stdout io.Writer) (help bool, err error) {
	out := fs.Output()
	fs.SetOutput(io.Discard) // print the usage once, below, where it belongs
	err = fs.Parse(args)
	fs.SetOutput(out)
	if errors.Is(err, flag.ErrHelp) {
		fs.SetOutput(stdout)
		fs.Usage()
		return true, nil
	}
	if err != nil {
		fmt.Fprintln(out, err)
		fs.Usage()
		return false, err
	}
	if fs.NArg() > 0 {
		return false, fmt.Errorf("unexpected arguments: %q", fs.Args())
	}
	return false, nil
}

func runPolicyCheck(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dir := policyFlags("check", "check [--dir policy]\n\nParses, schema-checks and compiles the policy without running its tests.", stderr)
	if help, err := parsePolicyFlags(fs, args, stdout); help || err != nil {
		return err
	}
	s, err := policy.Check(ctx, *dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: OK (revision %s)\n", s.Dir, s.Revision)
	fmt.Fprintf(stdout, "  %d rego modules, %d test files, %d owned prefixes, %d deny-list entries, %d members\n",
		s.Modules, s.Tests, s.Owners, s.Denylist, s.Members)
	fmt.Fprintf(stdout, "  admins: %s; auditors: %s; anonymous: %s; cool-down: %s\n",
		list(s.Settings.AdminTeams), list(s.Settings.AuditorTeams), s.Settings.Anonymous, cooldown(s.Settings.Cooldown))
	return nil
}

func runPolicyTest(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dir := policyFlags("test", "test [--dir policy] [-v]\n\nRuns the policy's *_test.rego unit tests against its data files.", stderr)
	verbose := fs.Bool("v", false, "print every test, not only failures")
	if help, err := parsePolicyFlags(fs, args, stdout); help || err != nil {
		return err
	}
	rep, err := policy.RunTests(ctx, *dir)
	if err != nil {
		return err
	}
	rep.Write(stdout, *verbose)
	if !rep.OK() {
		return fmt.Errorf("policy: %d of %d tests failed", rep.Failed, rep.Passed+rep.Failed)
	}
	return nil
}

// stringList is a repeatable (or comma-separated) flag.
type stringList []string

func (l *stringList) String() string { return strings.Join(*l, ",") }

func (l *stringList) Set(v string) error {
	for s := range strings.SplitSeq(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			*l = append(*l, s)
		}
	}
	return nil
}

func runPolicyExplain(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, dir := policyFlags("explain", `explain --subject S [--team T]... --action A [--module M] [--version V] [flags]

Decides one request against the policy in the directory (without running its
tests, so a work in progress can be asked) and prints the decision and every
reason. Example:
  modgate policy explain --subject alice --team payments --action zip \
      --module corp.example/secret/x --version v1.0.0 --route private`, stderr)
	var teams, scopes, advisories, licenses stringList
	fs.Var(&advisories, "advisory", "an advisory affecting the version, ID[:FIXED] (e.g. GO-2024-1234:v1.2.4; repeatable): input.advisories")
	fs.Var(&licenses, "license", "an SPDX license id found in the version's zip (repeatable, or comma-separated): input.licenses")
	subject := fs.String("subject", "", "the caller's subject (empty with --method anonymous)")
	fs.Var(&teams, "team", "a team of the caller (repeatable, or comma-separated)")
	fs.Var(&scopes, "scope", "an API-token scope (repeatable); none means unrestricted")
	method := fs.String("method", string(identity.MethodOIDC), "how the caller authenticated: mtls, oidc, token or anonymous")
	action := fs.String("action", "zip", "list, info, mod, zip, latest, sumdb, vulndb, publish, delete, audit.read or admin")
	module := fs.String("module", "", "the module path")
	version := fs.String("version", "", "the version (empty for list and latest)")
	versionTime := fs.String("version-time", "", "the version's publication time, RFC 3339 (for the cool-down)")
	route := fs.String("route", string(policy.RoutePublic), "private for modules served from internal git (the GOPRIVATE patterns in modgate.yaml), else public")
	clientAddr := fs.String("client-addr", "", "the client's address")
	at := fs.String("time", "", "decide as of this time, RFC 3339 (default now)")
	if help, err := parsePolicyFlags(fs, args, stdout); help || err != nil {
		return err
	}

	for _, err := range []error{
		checkEnum("--method", *method, []identity.Method{identity.MethodMTLS, identity.MethodOIDC, identity.MethodToken, identity.MethodAnonymous}),
		checkEnum("--action", *action, policy.Actions()),
		checkEnum("--route", *route, []policy.Route{policy.RoutePublic, policy.RoutePrivate}),
	} {
		if err != nil {
			return fmt.Errorf("policy explain: %w", err)
		}
	}
	in := policy.Input{
		Subject:     *subject,
		Teams:       teams,
		Method:      identity.Method(*method),
		Scopes:      scopes,
		Action:      policy.Action(*action),
		Module:      *module,
		Version:     *version,
		VersionTime: *versionTime,
		Route:       policy.Route(*route),
		ClientAddr:  *clientAddr,
		Licenses:    slices.Sorted(slices.Values(licenses)),
		Advisories:  []policy.Advisory{},
	}
	for _, a := range advisories {
		id, fixed, _ := strings.Cut(a, ":")
		in.Advisories = append(in.Advisories, policy.Advisory{ID: id, Aliases: []string{}, Fixed: fixed})
	}
	if *at != "" {
		t, err := time.Parse(time.RFC3339, *at)
		if err != nil {
			return fmt.Errorf("--time: %w", err)
		}
		in.Time = t
	}
	eng, err := policy.Load(ctx, *dir, policy.Options{SkipTests: true, CacheSize: -1, TimeResolution: time.Second})
	if err != nil {
		return err
	}
	d, err := eng.Decide(ctx, in)
	if err != nil {
		return err
	}
	verdict := "DENY"
	if d.Allow {
		verdict = "ALLOW"
	}
	fmt.Fprintf(stdout, "%s (policy revision %s)\n", verdict, d.Revision)
	for _, r := range d.Reasons {
		fmt.Fprintf(stdout, "  - %s\n", r)
	}
	if !d.Allow {
		fmt.Fprintf(stdout, "the go command would print: %s\n", d.Reason())
	}
	return nil
}

func list(s []string) string {
	if len(s) == 0 {
		return "(none)"
	}
	return strings.Join(s, ", ")
}

func cooldown(c policy.Cooldown) string {
	if !c.Enabled {
		return "off"
	}
	return fmt.Sprintf("%dh", c.Hours)
}
