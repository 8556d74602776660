package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"

	"github.com/modgate/modgate/internal/agent"
)

const agentUsage = `Usage: modgate agent --upstream URL --cert FILE --key FILE [--ca FILE] [--listen ADDR]

Run a local forwarder for the go command, which cannot present TLS client
certificates: a plain-HTTP GOPROXY on the loopback interface that forwards every
request to modgate over TLS, presenting this machine's client certificate.
Authorization headers (tokens from .netrc) pass through. The certificate files
are re-read when they change. Point the go command at it with the
"go env -w GOPROXY=..." line printed at start.

Flags:
`

// runAgent implements "modgate agent".
func runAgent(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	var cfg agent.Config
	fs := flag.NewFlagSet("modgate agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), agentUsage)
		fs.PrintDefaults()
	}
	fs.StringVar(&cfg.Upstream, "upstream", "", "modgate's https `URL`, e.g. https://modgate.corp:8443")
	fs.StringVar(&cfg.Listen, "listen", agent.DefaultListen, "loopback `address` to listen on")
	fs.StringVar(&cfg.CertFile, "cert", "", "client certificate `file` (PEM)")
	fs.StringVar(&cfg.KeyFile, "key", "", "client private key `file` (PEM)")
	fs.StringVar(&cfg.CAFile, "ca", "", "`file` with the CA certificates that issued modgate's server certificate (default: system roots)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("agent: unexpected arguments %q", fs.Args())
	}
	if err := cfg.Validate(); err != nil {
		return err
	}

	logger := slog.New(slog.NewTextHandler(stderr, nil))
	a, err := agent.New(cfg, logger)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("agent: %w", err)
	}
	leaf := a.ClientCertificate().Leaf
	fmt.Fprintf(stdout, "modgate agent: forwarding %s to %s as %q (certificate serial %s, expires %s)\n",
		agent.GOPROXY(ln), cfg.Upstream, leaf.Subject.String(), leaf.SerialNumber, leaf.NotAfter.Format("2006-01-02"))
	fmt.Fprintf(stdout, "Point the go command at it:\n  go env -w GOPROXY=%s\n", agent.GOPROXY(ln))
	return a.Serve(ctx, ln)
}
