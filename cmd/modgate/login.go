package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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

const loginUsage = `usage: modgate login [flags] [proxy-url]

Signs you in to a modgate proxy with your company identity provider (OIDC
device flow: open the printed URL in a browser and confirm the code), then
stores the ID token as the password for the proxy's host:port in ~/.netrc
(mode 0600; other entries are kept) and in the credentials file used by
'modgate auth'. Prints the 'go env -w' line that points the go command at the
proxy.

Tokens expire (typically after an hour). Run 'modgate login' again, or let the
go command refresh the token itself (Go 1.24+):

    go env -w GOAUTH='netrc;modgate auth'

With only a proxy URL, the proxy names its identity provider; otherwise pass
--issuer and --client-id.

Flags:
`

// runLogin implements `modgate login`.
func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), loginUsage)
		fs.PrintDefaults()
	}
	var (
		proxy       = fs.String("proxy", "", "modgate URL as used in GOPROXY, e.g. https://modgate.corp.example:8443 (or the first argument)")
		issuer      = fs.String("issuer", "", "OIDC issuer URL (default: asked from the proxy)")
		clientID    = fs.String("client-id", "", "OIDC client id registered for modgate login (default: asked from the proxy)")
		scopes      = fs.String("scopes", strings.Join(login.DefaultScopes, ","), "comma-separated OIDC scopes to request")
		netrcPath   = fs.String("netrc", "", "the .netrc file to update (default $NETRC or ~/.netrc)")
		credentials = fs.String("credentials", "", "credentials file for 'modgate auth' (default <user config dir>/modgate/credentials.json)")
		caFile      = fs.String("ca-file", "", "PEM file with extra CA certificates to trust for the proxy and the identity provider")
		private     = fs.String("private", "", "your private module patterns (GOPRIVATE syntax), for the printed GONOSUMDB setting")
		timeout     = fs.Duration("timeout", 15*time.Minute, "give up waiting for approval after this long")
	)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	switch {
	case fs.NArg() == 1 && *proxy == "":
		*proxy = fs.Arg(0)
	case fs.NArg() > 0:
		fs.Usage()
		return fmt.Errorf("login: unexpected arguments %q", fs.Args())
	}
	if *proxy == "" {
		fs.Usage()
		return errors.New("login: the proxy URL is required")
	}
	client, err := httpClientWithCA(*caFile)
	if err != nil {
		return err
	}
	cfg := login.Config{
		ProxyURL:        *proxy,
		Issuer:          *issuer,
		ClientID:        *clientID,
		NetrcPath:       *netrcPath,
		CredentialsPath: *credentials,
		PrivatePatterns: *private,
		HTTPClient:      client,
		Out:             stdout,
	}
	for _, s := range strings.Split(*scopes, ",") {
		if s = strings.TrimSpace(s); s != "" {
			cfg.Scopes = append(cfg.Scopes, s)
		}
	}
	ctx, cancel := context.WithTimeout(ctx, *timeout)
	defer cancel()
	res, err := login.Login(ctx, cfg)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\nSigned in as %s; the token is valid until %s.\n", res.Subject, res.Expiry.Local().Format("2006-01-02 15:04 MST"))
	fmt.Fprintf(stdout, "Stored it for machine %s in %s.\n\n", res.Machine, res.NetrcPath)
	fmt.Fprintf(stdout, "Point the go command at modgate:\n\n    %s\n\n", login.Advice(*proxy, *private))
	if res.HasRefreshToken {
		fmt.Fprintf(stdout, "When the token expires, run 'modgate login' again, or let the go command refresh it (Go 1.24+):\n\n    go env -w GOAUTH='netrc;modgate auth'\n")
	} else {
		fmt.Fprintf(stdout, "When the token expires, run 'modgate login' again.\n")
	}
	return nil
}

// httpClientWithCA returns a client trusting the system roots plus the
// certificates in caFile, if given.
func httpClientWithCA(caFile string) (*http.Client, error) {
	if caFile == "" {
		return &http.Client{Timeout: 30 * time.Second}, nil
	}
	pem, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("reading --ca-file: %w", err)
	}
	pool, err := x509.SystemCertPool()
	if err != nil {
		pool = x509.NewCertPool()
	}
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("--ca-file %s: no PEM certificates", caFile)
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}, nil
}
