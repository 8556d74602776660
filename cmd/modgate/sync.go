package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"sync"

	"github.com/modgate/modgate/internal/mirror"
)

const syncUsage = `usage: modgate sync [--go-sum FILE]... [--go-mod FILE]... [--modules LIST] [--latest N] [--proxy URL] [--token T] [--ca-file PEM]

Pre-warms a running modgate: fetches through it everything the inputs need, so
each object takes modgate's normal path (authentication, policy, upstream fetch,
verification, cache, audit) and lands in the cache every replica serves from.

  --go-sum   every "module version" and "module version/go.mod" line: exactly
             the .zip and .mod set that building the project (and 'go mod
             download' with no arguments) needs
  --graph    also every version each synced go.mod requires, transitively: a
             superset of what 'go mod download all' fetches
  --go-mod   the go.mod's require lines (for the whole graph pass the go.sum)
  --modules  comma-separated: path@version, or a bare path for its newest
             --latest release versions

Every .zip's and .mod's h1: hash is compared with the go.sum line when there is
one; a mismatch fails the sync loudly. Objects already cached are cheap hits, so
an interrupted sync is resumed by running it again. On a terminal it shows a
progress line; otherwise it prints a JSON summary. Exits non-zero if any object
failed.

The proxy URL defaults to $MODGATE_PROXY; the credential is --token, else
$MODGATE_TOKEN, else the proxy host's password in ~/.netrc.

Flags:
`

func runSync(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("modgate sync", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() { fmt.Fprint(fs.Output(), syncUsage); fs.PrintDefaults() }
	var goSums, goMods stringList
	fs.Var(&goSums, "go-sum", "go.sum file to sync (repeatable)")
	fs.Var(&goMods, "go-mod", "go.mod file whose requirements to sync (repeatable)")
	modules := fs.String("modules", "", "comma-separated module@version entries or bare module paths")
	latest := fs.Int("latest", 1, "how many newest release versions of each bare module path")
	concurrency := fs.Int("concurrency", 8, "parallel fetches")
	graph := fs.Bool("graph", false, "also sync every version each synced go.mod requires, transitively (for 'go mod download all')")
	jsonOut := fs.Bool("json", false, "print the JSON summary even on a terminal")
	var rf remoteFlags
	rf.register(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("unexpected argument %q (see --help)", fs.Arg(0))
	}
	if *concurrency < 1 || *concurrency > 64 || *latest < 1 {
		return errors.New("--concurrency must be 1..64 and --latest at least 1")
	}
	var targets []mirror.Target
	for _, p := range goSums {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ts, err := mirror.ParseGoSum(data)
		if err != nil {
			return fmt.Errorf("%s: %w", p, err)
		}
		targets = append(targets, ts...)
	}
	for _, p := range goMods {
		data, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		ts, err := mirror.ParseGoMod(p, data)
		if err != nil {
			return err
		}
		targets = append(targets, ts...)
	}
	exact, bare, err := mirror.ParseModuleArgs(strings.Split(*modules, ","))
	if err != nil {
		return err
	}
	targets = append(targets, exact...)
	if len(targets) == 0 && len(bare) == 0 {
		return errors.New("nothing to sync: pass --go-sum, --go-mod or --modules")
	}

	proxy := rf.proxy
	if proxy == "" {
		proxy = os.Getenv("MODGATE_PROXY")
	}
	u, err := url.Parse(proxy)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("--proxy %q is not an http(s) URL (or set MODGATE_PROXY)", proxy)
	}
	token := rf.token
	if token == "" {
		token = os.Getenv("MODGATE_TOKEN")
	}
	if token == "" {
		// No netrc entry is not an error here: a modgate may admit this machine
		// by other means (loopback development).
		token, _ = netrcPassword(rf.netrcPath, u)
	}
	hc, err := httpClientWithCA(rf.caFile)
	if err != nil {
		return err
	}
	hc.Timeout = 0 // zips may be large; the transport bounds connection set-up

	s := &mirror.Syncer{BaseURL: proxy, Client: hc, Token: token, Concurrency: *concurrency, Latest: *latest, Graph: *graph}
	tty := isTerminal(stdout) && !*jsonOut
	var mu sync.Mutex
	if tty {
		s.Progress = func(done, total, failed int) {
			mu.Lock()
			fmt.Fprintf(stdout, "\rsync: %d/%d objects, %d failed", done, total, failed)
			mu.Unlock()
		}
	}
	sum, err := s.Run(ctx, targets, bare)
	if tty {
		fmt.Fprintf(stdout, "\nsynced %d modules: %d objects, %d bytes in %.1fs; %d failed\n", sum.Modules, sum.Objects, sum.Bytes, sum.Seconds, sum.Failed)
		for _, f := range sum.Failures {
			fmt.Fprintf(stderr, "  %s: %s\n", f.Object, f.Error)
		}
	} else {
		json.NewEncoder(stdout).Encode(sum)
	}
	return err
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}
