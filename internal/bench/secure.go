package bench

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/modgate/modgate/internal/certgen"
)

// benchCerts is a throwaway CA and a server certificate for 127.0.0.1, shared by
// modgate and nginx so both sides do the same TLS work.
type benchCerts struct {
	CAFile, CertFile, KeyFile string
	Pool                      *x509.CertPool
}

func writeBenchCerts(dir string) (*benchCerts, error) {
	ca, err := certgen.NewCA("modgate bench CA")
	if err != nil {
		return nil, err
	}
	leaf, err := ca.IssueServer([]string{"127.0.0.1", "localhost"})
	if err != nil {
		return nil, err
	}
	c := &benchCerts{
		CAFile:   filepath.Join(dir, "ca.pem"),
		CertFile: filepath.Join(dir, "server.pem"),
		KeyFile:  filepath.Join(dir, "server.key"),
		Pool:     x509.NewCertPool(),
	}
	c.Pool.AddCert(ca.Cert)
	for _, f := range []struct {
		path string
		data []byte
	}{{c.CAFile, ca.CertPEM}, {c.CertFile, leaf.CertPEM}, {c.KeyFile, leaf.KeyPEM}} {
		if err := os.WriteFile(f.path, f.data, 0o600); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	return c, nil
}

// httpsClient trusts only the bench CA and keeps up to conns connections open.
func (c *benchCerts) httpsClient(conns int) *http.Client {
	return &http.Client{Transport: &http.Transport{
		TLSClientConfig:     &tls.Config{RootCAs: c.Pool},
		MaxIdleConns:        conns,
		MaxIdleConnsPerHost: conns,
		MaxConnsPerHost:     conns,
		DisableCompression:  true,
		ForceAttemptHTTP2:   false,
	}}
}

// benchDatabase is a database of its own in the project's throwaway PostgreSQL
// cluster (.ci/postgres), for API tokens and the audit trail.
type benchDatabase struct {
	URL      string
	adminURL string
	name     string
	// stopCluster is set when the bench started the cluster and so stops it.
	stopCluster func()
}

// startBenchDatabase starts the cluster when it is not running and creates an
// empty database in it; modgate migrates it at start-up.
func startBenchDatabase(ctx context.Context) (*benchDatabase, error) {
	root, err := repoRoot()
	if err != nil {
		return nil, err
	}
	script := filepath.Join(root, ".ci", "postgres")
	wasRunning := exec.CommandContext(ctx, "bash", script, "status").Run() == nil
	out, err := exec.CommandContext(ctx, "bash", script, "start").Output()
	if err != nil {
		var stderr []byte
		if ee, ok := errors.AsType[*exec.ExitError](err); ok {
			stderr = ee.Stderr
		}
		return nil, fmt.Errorf("bench: .ci/postgres start: %w\n%s", err, stderr)
	}
	lines := strings.Fields(string(out))
	if len(lines) == 0 {
		return nil, errors.New("bench: .ci/postgres start printed no URL")
	}
	d := &benchDatabase{adminURL: lines[len(lines)-1]}
	if !wasRunning {
		d.stopCluster = func() { exec.Command("bash", script, "stop").Run() }
	}
	var b [6]byte
	rand.Read(b[:])
	d.name = "modgate_bench_" + hex.EncodeToString(b[:])
	conn, err := pgx.Connect(ctx, d.adminURL)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+pgx.Identifier{d.name}.Sanitize()); err != nil {
		d.Close()
		return nil, fmt.Errorf("bench: creating the database: %w", err)
	}
	u, err := url.Parse(d.adminURL)
	if err != nil {
		d.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	u.Path = "/" + d.name
	d.URL = u.String()
	return d, nil
}

// Close drops the database, and stops the cluster if the bench started it.
func (d *benchDatabase) Close() {
	if d.name != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		if conn, err := pgx.Connect(ctx, d.adminURL); err == nil {
			conn.Exec(ctx, "DROP DATABASE IF EXISTS "+pgx.Identifier{d.name}.Sanitize()+" WITH (FORCE)")
			conn.Close(ctx)
		}
		cancel()
	}
	if d.stopCluster != nil {
		d.stopCluster()
	}
}

// secureOptions say which of modgate's production features a secure modgate has.
type secureOptions struct {
	// Database enables API tokens and the audit trail; without it callers are
	// anonymous (admitted on loopback) and nothing is audited.
	Database *benchDatabase
}

// secureModgate is modgate as deployed: TLS, and with a database, API-token
// authentication and the audit trail; the repository's policy decides every
// request either way.
type secureModgate struct {
	*modgateProc
	Token string // a pull token when there is a database
	// PprofURL is modgate's profile endpoint when Env.ProfileDir is set.
	PprofURL string
}

// startSecureModgate writes a configuration file and starts `modgate serve` with
// it over upstream, caching into cacheDir.
func startSecureModgate(ctx context.Context, env *Env, name, upstream, cacheDir string, certs *benchCerts, opts secureOptions) (*secureModgate, error) {
	dir := filepath.Join(env.Dir, name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	var cfg strings.Builder
	fmt.Fprintf(&cfg, "listen: 127.0.0.1:0\nupstream:\n  proxies: %q\ncache:\n  dir: %q\n", upstream, cacheDir)
	fmt.Fprintf(&cfg, "tls:\n  cert_file: %q\n  key_file: %q\n", certs.CertFile, certs.KeyFile)
	fmt.Fprintf(&cfg, "policy:\n  dir: policy\nlog:\n  level: info\n")
	cfg.WriteString(benchConfig)
	if opts.Database != nil {
		fmt.Fprintf(&cfg, "database:\n  url: %q\naudit:\n  spool_dir: %q\n", opts.Database.URL, filepath.Join(dir, "audit-spool"))
	} else {
		cfg.WriteString("auth:\n  anonymous: true\n")
	}
	cfgPath := filepath.Join(dir, "modgate.yaml")
	if err := os.WriteFile(cfgPath, []byte(cfg.String()), 0o600); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	args := []string{"serve", "--config", cfgPath}
	var pprofURL string
	if env.ProfileDir != "" {
		port, err := freePort()
		if err != nil {
			return nil, err
		}
		addr := fmt.Sprintf("127.0.0.1:%d", port)
		args = append(args, "--pprof-listen", addr)
		pprofURL = "http://" + addr + "/debug/pprof/profile"
	}
	p, err := startModgateArgs(ctx, env.Modgate, filepath.Join(dir, "modgate.log"), args)
	if err != nil {
		return nil, err
	}
	m := &secureModgate{modgateProc: p, PprofURL: pprofURL}
	if opts.Database != nil {
		// The database is migrated once modgate listens.
		cmd := exec.CommandContext(ctx, env.Modgate, "token", "create", "--subject", "bench@corp.example",
			"--scope", "pull", "--description", "modgate-bench", "--secret-only", "--database-url", opts.Database.URL)
		out, err := cmd.Output()
		if err != nil {
			p.Stop()
			var stderr []byte
			if ee, ok := errors.AsType[*exec.ExitError](err); ok {
				stderr = ee.Stderr
			}
			return nil, fmt.Errorf("bench: modgate token create: %w\n%s", err, stderr)
		}
		m.Token = strings.TrimSpace(string(out))
	}
	return m, nil
}

// treeObjects lists the module objects of a GOPROXY tree as URL paths, by kind:
// "small" (.info and .mod) and "zip".
func treeObjects(tree string) (small, zips []string, zipBytes int64, err error) {
	err = filepath.WalkDir(tree, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() || filepath.Base(filepath.Dir(path)) != "@v" {
			return nil
		}
		rel, err := filepath.Rel(tree, path)
		if err != nil {
			return err
		}
		u := "/" + filepath.ToSlash(rel)
		switch filepath.Ext(path) {
		case ".info", ".mod":
			small = append(small, u)
		case ".zip":
			info, err := d.Info()
			if err != nil {
				return err
			}
			zipBytes += info.Size()
			zips = append(zips, u)
		}
		return nil
	})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("bench: listing %s: %w", tree, err)
	}
	return small, zips, zipBytes, nil
}

// fetchAll GETs every path from base with a few workers and checks for 200: it
// fills modgate's cache, so that the timed runs measure the warm path.
func fetchAll(ctx context.Context, c *http.Client, base, token string, paths []string) error {
	work := make(chan string)
	var mu sync.Mutex
	var errs []error
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for p := range work {
				if err := fetchOK(ctx, c, base+p, token); err != nil {
					mu.Lock()
					errs = append(errs, err)
					mu.Unlock()
				}
			}
		})
	}
	for _, p := range paths {
		work <- p
	}
	close(work)
	wg.Wait()
	if len(errs) > 0 {
		return fmt.Errorf("bench: %d of %d fetches failed, first: %w", len(errs), len(paths), errs[0])
	}
	return nil
}

func fetchOK(ctx context.Context, c *http.Client, u, token string) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("GET %s: %s: %s", u, resp.Status, tail(body, 200))
	}
	return nil
}
