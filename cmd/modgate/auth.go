package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/login"
)

const authUsage = `usage: modgate auth [flags] [url]

A GOAUTH helper (Go 1.24+; see 'go help goauth'). Enable it BEFORE netrc:

    go env -w GOAUTH='modgate auth;netrc'

When several GOAUTH entries have credentials for a URL the leftmost wins, so
the helper must come first for its refreshed token to replace the one
'modgate login' wrote to your netrc file; netrc stays as the fallback.

It prints an Authorization header for each modgate proxy you signed in to
with 'modgate login' (the ID token, with the access token beside it for the
identity provider's userinfo endpoint), refreshing tokens that are about to
expire. When the go command passes a URL (after the proxy answered 4xx) it
prints the header for that URL's proxy only, refreshing the token first if
the proxy answered 401. It trusts the CA certificates given to
'modgate login --ca-file' when it talks to the identity provider.

Flags:
`

// runAuth implements `modgate auth`, reading the proxy's response that the go
// command writes to stdin.
func runAuth(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	return authMain(ctx, args, os.Stdin, stdout, stderr)
}

func authMain(ctx context.Context, args []string, stdin io.Reader, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("auth", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), authUsage)
		fs.PrintDefaults()
	}
	credentials := fs.String("credentials", "", "credentials file written by 'modgate login' (default <user config dir>/modgate/credentials.json)")
	caFile := fs.String("ca-file", "", "PEM file with extra CA certificates to trust for the identity provider (default: those given to 'modgate login --ca-file')")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if fs.NArg() > 1 {
		fs.Usage()
		return fmt.Errorf("auth: unexpected arguments %q", fs.Args()[1:])
	}
	path := *credentials
	if path == "" {
		var err error
		if path, err = login.DefaultCredentialsPath(); err != nil {
			return err
		}
	}
	creds, err := login.LoadCredentials(path)
	if err != nil {
		return err
	}
	// nil: each credential's own CA certificates, stored at login.
	var client *http.Client
	if *caFile != "" {
		pem, err := readCAFile(*caFile)
		if err != nil {
			return err
		}
		if client, err = login.NewHTTPClient(pem); err != nil {
			return err
		}
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()

	// Without a URL: the go command's first call, before any request.
	if fs.NArg() == 0 {
		var failed []error
		w := bufio.NewWriter(stdout)
		for _, c := range creds {
			fresh, err := login.FreshToken(ctx, path, c, client, false, time.Now())
			if err != nil {
				failed = append(failed, err)
				continue
			}
			writeCredentialSet(w, fresh)
		}
		if err := w.Flush(); err != nil {
			return err
		}
		for _, err := range failed {
			fmt.Fprintf(stderr, "modgate auth: %v\n", err)
		}
		if len(failed) > 0 && len(failed) == len(creds) {
			return errors.New("modgate auth: no usable credentials")
		}
		return nil
	}

	// With a URL: the proxy refused a request; stdin holds its response.
	u := fs.Arg(0)
	c, ok := login.ForURL(creds, u)
	if !ok {
		return nil // not a modgate proxy we know: no credentials to offer
	}
	force := false
	if resp, err := http.ReadResponse(bufio.NewReader(stdin), nil); err == nil {
		resp.Body.Close()
		force = resp.StatusCode == http.StatusUnauthorized
	}
	fresh, err := login.FreshToken(ctx, path, c, client, force, time.Now())
	if err != nil {
		return fmt.Errorf("modgate auth: %w", err)
	}
	w := bufio.NewWriter(stdout)
	writeCredentialSet(w, fresh)
	return w.Flush()
}

// writeCredentialSet prints one block of the GOAUTH response format:
// URL lines, a blank line, header lines, a blank line.
func writeCredentialSet(w io.Writer, c login.Credential) {
	fmt.Fprintf(w, "%s\n\nAuthorization: %s\n\n", strings.TrimSuffix(c.Proxy, "/"), c.Header())
}
