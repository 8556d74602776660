package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"

	"github.com/modgate/modgate/internal/netrc"
	"github.com/modgate/modgate/internal/publish"
)

const publishUsage = `usage: modgate publish [dir] --version vX.Y.Z [--proxy URL] [--token T | --netrc FILE] [--ca-file PEM]

Builds the module zip of dir (default ".") exactly as the go command would
(golang.org/x/mod/zip: no VCS directories, nested modules or symlinks), and
publishes it to modgate as <module>@<version>, the module path read from
dir/go.mod. Only private module paths may be published, by the team that owns
them; a published version never changes: publishing the same content again
succeeds, different content is refused (409).

The proxy URL defaults to $MODGATE_PROXY. The credential is --token, else
$MODGATE_TOKEN, else the password for the proxy's host in ~/.netrc (what
'modgate login' writes).

Flags:
`

const deleteUsage = `usage: modgate delete <module>@<version> --reason "..." [--proxy URL] [--token T | --netrc FILE] [--ca-file PEM]

Deletes a version published in modgate (admin teams only). Afterwards the go
command gets 410 Gone with "deleted by <you> at <time>: <reason>", the version
leaves list and @latest, and it can never be published again.

Flags:
`

// remoteFlags are the flags publish and delete share: where modgate is and how to
// authenticate.
type remoteFlags struct {
	proxy, token, netrcPath, caFile string
}

func (rf *remoteFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&rf.proxy, "proxy", "", "modgate URL, e.g. https://modgate.corp.example (default $MODGATE_PROXY)")
	// Not the flag's default: --help would print the secret.
	fs.StringVar(&rf.token, "token", "", "Bearer token: an OIDC ID token or a modgate API token (default $MODGATE_TOKEN, else ~/.netrc)")
	fs.StringVar(&rf.netrcPath, "netrc", "", "netrc file to read the proxy's password from (default $NETRC or ~/.netrc)")
	fs.StringVar(&rf.caFile, "ca-file", "", "PEM file with extra CA certificates to trust for the proxy")
}

// client resolves the flags into a publish client.
func (rf *remoteFlags) client() (*publish.Client, error) {
	proxy := rf.proxy
	if proxy == "" {
		proxy = os.Getenv("MODGATE_PROXY")
	}
	if proxy == "" {
		return nil, errors.New("no proxy: pass --proxy or set MODGATE_PROXY")
	}
	u, err := url.Parse(proxy)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--proxy %q is not an http(s) URL", proxy)
	}
	token := rf.token
	if token == "" {
		token = os.Getenv("MODGATE_TOKEN")
	}
	if token == "" {
		token, err = netrcPassword(rf.netrcPath, u)
		if err != nil {
			return nil, err
		}
	}
	hc, err := httpClientWithCA(rf.caFile)
	if err != nil {
		return nil, err
	}
	hc.Timeout = 0 // a large zip over a slow link may take long; the transport bounds the handshake
	return &publish.Client{BaseURL: proxy, Token: token, HTTP: hc}, nil
}

// netrcPassword finds the proxy's password as the go command would: the entry
// for host:port, then for the host alone.
func netrcPassword(path string, u *url.URL) (string, error) {
	if path == "" {
		var err error
		if path, err = netrc.DefaultPath(); err != nil {
			return "", err
		}
	}
	f, err := netrc.ReadFile(path)
	if err != nil {
		return "", err
	}
	for _, name := range []string{u.Host, u.Hostname()} {
		if m, ok := f.Lookup(name); ok && m.Password != "" {
			return m.Password, nil
		}
	}
	return "", fmt.Errorf("no credential for %s: pass --token, set MODGATE_TOKEN or run 'modgate login %s'", u.Host, u.String())
}

// runPublish implements `modgate publish`.
func runPublish(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("publish", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), publishUsage)
		fs.PrintDefaults()
	}
	var rf remoteFlags
	rf.register(fs)
	version := fs.String("version", "", "the version to publish, canonical semver (required)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(pos) > 1 {
		fs.Usage()
		return fmt.Errorf("publish: one directory at most, got %q", pos)
	}
	dir := "."
	if len(pos) == 1 {
		dir = pos[0]
	}
	if *version == "" {
		fs.Usage()
		return errors.New("publish: --version is required")
	}
	client, err := rf.client()
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	modPath, err := publish.ModulePath(dir)
	if err != nil {
		return err
	}
	zf, err := publish.CreateZip(dir, modPath, *version)
	if err != nil {
		return err
	}
	defer os.Remove(zf.Name())
	defer zf.Close()
	res, err := client.Publish(ctx, modPath, *version, zf)
	if err != nil {
		return fmt.Errorf("publish %s@%s: %w", modPath, *version, err)
	}
	verb := "published"
	if !res.Created {
		verb = "already published (identical content)"
	}
	fmt.Fprintf(stdout, "%s@%s %s: %d bytes, %s, by %s at %s\n", res.Module, res.Version, verb,
		res.Size, res.Hash, res.Publisher, res.PublishedAt.Format("2006-01-02T15:04:05Z07:00"))
	return nil
}

// runDelete implements `modgate delete`.
func runDelete(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := flag.NewFlagSet("delete", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), deleteUsage)
		fs.PrintDefaults()
	}
	var rf remoteFlags
	rf.register(fs)
	reason := fs.String("reason", "", "why, shown to everyone who asks for the version (required)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return nil
		}
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return errors.New("delete: name one module@version")
	}
	modPath, version, ok := strings.Cut(pos[0], "@")
	if !ok || modPath == "" || version == "" {
		return fmt.Errorf("delete: %q is not module@version", pos[0])
	}
	if strings.TrimSpace(*reason) == "" {
		fs.Usage()
		return errors.New("delete: --reason is required")
	}
	client, err := rf.client()
	if err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if err := client.Delete(ctx, modPath, version, *reason); err != nil {
		return fmt.Errorf("delete %s: %w", pos[0], err)
	}
	fmt.Fprintf(stdout, "%s deleted: it answers 410 Gone from now on and can never be published again\n", pos[0])
	return nil
}
