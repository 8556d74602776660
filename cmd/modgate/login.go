package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"time"

	"github.com/modgate/modgate/internal/login"
)

const loginUsage = `usage: modgate login [flags] [proxy-url]

Signs you in to a modgate proxy with your company identity provider (OIDC
device flow: open the printed URL in a browser and confirm the code), then
stores the tokens for the proxy's host:port in your netrc file ($NETRC, else
~/.netrc; on Windows %USERPROFILE%\_netrc, or .netrc if only that exists),
mode 0600 with other entries kept, and in the credentials file used by
'modgate auth'. Prints the 'go env -w' line that points the go command at the
proxy.

ID tokens expire (typically after an hour). Let the go command refresh them
itself (Go 1.24+), with the helper FIRST:

    go env -w GOAUTH='modgate auth;netrc'

The leftmost GOAUTH entry that has credentials for a URL wins, so with netrc
first the go command would keep sending the expired token from the netrc file.

With only a proxy URL, the proxy names its identity provider and the scopes
to request; otherwise pass --issuer and --client-id (and --scopes).

Flags:
`

// runLogin implements `modgate login`.
func runLogin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("login", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		io.WriteString(fs.Output(), loginUsage)
		fs.PrintDefaults()
	}
	var (
		proxy       = fs.String("proxy", "", "modgate URL as used in GOPROXY, e.g. https://modgate.corp.example:8443 (or the first argument)")
		issuer      = fs.String("issuer", "", "OIDC issuer URL (default: asked from the proxy)")
		clientID    = fs.String("client-id", "", "OIDC client id registered for modgate login (default: asked from the proxy)")
		scopes      = fs.String("scopes", "", "comma-separated OIDC scopes to request (default: those the proxy publishes, else "+strings.Join(login.DefaultScopes, ",")+")")
		netrcPath   = fs.String("netrc", "", "the .netrc file to update (default $NETRC or ~/.netrc)")
		credentials = fs.String("credentials", "", "credentials file for 'modgate auth' (default <user config dir>/modgate/credentials.json)")
		caFile      = fs.String("ca-file", "", "PEM file with extra CA certificates to trust for the proxy and the identity provider (kept with the credentials for 'modgate auth')")
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
	caPEM, err := readCAFile(*caFile)
	if err != nil {
		return err
	}
	client, err := login.NewHTTPClient(caPEM)
	if err != nil {
		return err
	}
	cfg := login.Config{
		CAPEM:           caPEM,
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
	fmt.Fprintf(stdout, "Stored it for machine %s in %s (scopes %s).\n\n", res.Machine, res.NetrcPath, strings.Join(res.Scopes, " "))
	fmt.Fprintf(stdout, "Point the go command at modgate:\n\n    %s\n\n", login.Advice(*proxy, *private))
	if !res.HasRefreshToken {
		fmt.Fprintf(stdout, "The identity provider issued no refresh token: when the token expires, run 'modgate login' again.\n")
		return nil
	}
	goauth, known := currentGOAUTH(ctx)
	switch advice := login.GOAUTHAdvice(goauth); {
	case !known:
		fmt.Fprintf(stdout, "Let the go command refresh the token when it expires (Go 1.24+), the helper first:\n\n    go env -w GOAUTH='%s'\n", login.GOAUTH)
	case advice != "":
		fmt.Fprint(stdout, advice)
	default:
		fmt.Fprintf(stdout, "GOAUTH=%s: the go command refreshes the token through 'modgate auth'.\n", goauth)
	}
	return nil
}

// currentGOAUTH asks the go command for its GOAUTH setting (the environment,
// then go env -w). known is false when there is no go command to ask.
func currentGOAUTH(ctx context.Context) (goauth string, known bool) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "go", "env", "GOAUTH").Output()
	if err != nil {
		return "", false
	}
	return strings.TrimSpace(string(out)), true
}

// readCAFile returns the PEM in path; "" reads nothing.
func readCAFile(path string) ([]byte, error) {
	if path == "" {
		return nil, nil
	}
	pem, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("reading --ca-file: %w", err)
	}
	return pem, nil
}

// httpClientWithCA returns a client trusting the system roots plus the
// certificates in caFile, if given.
func httpClientWithCA(caFile string) (*http.Client, error) {
	pem, err := readCAFile(caFile)
	if err != nil {
		return nil, err
	}
	client, err := login.NewHTTPClient(pem)
	if err != nil {
		return nil, fmt.Errorf("--ca-file %s: %w", caFile, err)
	}
	return client, nil
}
