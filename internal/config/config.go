// Package config loads modgate's YAML configuration. Every key, its default and its
// meaning is documented in docs/config.md; Defaults and Validate are the source of
// truth that document describes.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/modgate/modgate/internal/auth"
)

// Config is the whole configuration file.
type Config struct {
	// Listen is the address to serve on.
	Listen string `yaml:"listen"`
	// Replica names this process in logs and audit events; defaults to the host name.
	Replica  string   `yaml:"replica"`
	Cache    Cache    `yaml:"cache"`
	Upstream Upstream `yaml:"upstream"`
	SumDB    SumDB    `yaml:"sumdb"`
	Log      Log      `yaml:"log"`
	Server   Server   `yaml:"server"`
	// TLS terminates TLS and configures client certificates (docs/mtls.md). Without
	// tls.cert_file modgate serves plain HTTP, which Validate allows only on loopback.
	Private  Private        `yaml:"private"`
	Policy   Policy         `yaml:"policy"`
	Audit    Audit          `yaml:"audit"`
	TLS      auth.TLSConfig `yaml:"tls"`
	Auth     Auth           `yaml:"auth"`
	Database Database       `yaml:"database"`
	Publish  Publish        `yaml:"publish"`
}

// Publish configures publishing private module versions into modgate
// (docs/api.md). Publishing needs the database.
type Publish struct {
	// MaxZipSize bounds an uploaded module zip in bytes; 0 means the go command's
	// own limit (golang.org/x/mod/zip.MaxZipFile, 500 MiB), which is also the
	// largest value allowed: a bigger zip could never be downloaded.
	MaxZipSize int64 `yaml:"max_zip_size"`
}

// maxZipFile is golang.org/x/mod/zip.MaxZipFile, kept here so config does not
// import the module zip code.
const maxZipFile = 500 << 20

// Private names the company's private module paths. They are never sent to an
// upstream mirror or looked up in the checksum database, under any error. Paths
// matched by a route are served from the company's git servers
// (docs/private-modules.md); other private paths answer 404.
type Private struct {
	// Patterns is a GOPRIVATE-style comma-separated list of glob path prefixes,
	// e.g. "corp.example/*,git.corp.example". The routes' patterns are private too.
	Patterns string `yaml:"patterns"`
	// Routes map private module paths to git repositories; the first match wins.
	Routes []PrivateRoute `yaml:"routes"`
	// MirrorDir holds modgate's bare mirror of each repository; empty means
	// <cache.dir>/.git-mirrors.
	MirrorDir string `yaml:"mirror_dir"`
	// Refresh is how old a mirror may be when a list, @latest or a branch or
	// commit query is answered; new tags show up within it.
	Refresh Duration `yaml:"refresh"`
	// GitTimeout bounds each git command.
	GitTimeout Duration `yaml:"git_timeout"`
}

// PrivateRoute maps module paths matching Pattern to repositories.
type PrivateRoute struct {
	// Pattern is a GOPRIVATE-style glob list, e.g. "corp.example/*".
	Pattern string `yaml:"pattern"`
	// Repo is the repository URL template (https, http or ssh): {root} is the
	// repository's root module path, {path} the same without the host element,
	// {host} the host element. E.g. "https://git.corp.example/{path}.git".
	Repo string `yaml:"repo"`
	// RootDepth is how many module path elements name the repository
	// (corp.example/team/app: 3, corp.example/group/sub/app: 4); 0 means 3.
	RootDepth   int            `yaml:"root_depth"`
	Credentials GitCredentials `yaml:"credentials"`
}

// GitCredentials authenticate modgate to a git server: a username and a
// password or token (from a file or an environment variable) for HTTPS, or an
// SSH key with a known_hosts file for ssh:// URLs.
type GitCredentials struct {
	Username       string `yaml:"username"`
	PasswordFile   string `yaml:"password_file"`
	PasswordEnv    string `yaml:"password_env"`
	SSHKeyFile     string `yaml:"ssh_key_file"`
	KnownHostsFile string `yaml:"known_hosts_file"`
}

// Password resolves the password from password_file or password_env; "" if
// neither is set.
func (g GitCredentials) Password() (string, error) {
	switch {
	case g.PasswordFile != "":
		b, err := os.ReadFile(g.PasswordFile)
		if err != nil {
			return "", fmt.Errorf("config: private route credentials: %w", err)
		}
		return strings.TrimRight(string(b), "\r\n"), nil
	case g.PasswordEnv != "":
		v, ok := os.LookupEnv(g.PasswordEnv)
		if !ok {
			return "", fmt.Errorf("config: private route credentials: environment variable %s is not set", g.PasswordEnv)
		}
		return v, nil
	}
	return "", nil
}

// AllPatterns returns private.patterns and every route's pattern as one
// GOPRIVATE-style list.
func (p *Private) AllPatterns() string {
	var ps []string
	if p.Patterns != "" {
		ps = append(ps, p.Patterns)
	}
	for _, r := range p.Routes {
		if r.Pattern != "" {
			ps = append(ps, r.Pattern)
		}
	}
	return strings.Join(ps, ",")
}

func (p *Private) validate() []string {
	var errs []string
	for _, pat := range strings.Split(p.AllPatterns(), ",") {
		if pat = strings.TrimSpace(pat); pat != "" {
			if _, err := path.Match(pat, pat); err != nil {
				errs = append(errs, fmt.Sprintf("private: invalid glob %q", pat))
			}
		}
	}
	if p.Refresh < 0 || p.GitTimeout < 0 {
		errs = append(errs, "private: refresh and git_timeout must not be negative")
	}
	for i, r := range p.Routes {
		where := fmt.Sprintf("private.routes[%d]", i)
		if r.Pattern == "" || r.Repo == "" {
			errs = append(errs, where+": pattern and repo must be set")
			continue
		}
		if !strings.Contains(r.Repo, "{root}") && !strings.Contains(r.Repo, "{path}") {
			errs = append(errs, where+": repo must contain {root} or {path}")
		}
		u, err := url.Parse(strings.NewReplacer("{root}", "r", "{path}", "p", "{host}", "h").Replace(r.Repo))
		switch {
		case err != nil:
			errs = append(errs, fmt.Sprintf("%s: repo: %v", where, err))
		case u.Scheme != "https" && u.Scheme != "http" && u.Scheme != "ssh":
			errs = append(errs, where+": repo must be an https://, http:// or ssh:// URL")
		case u.User != nil:
			if _, ok := u.User.Password(); ok {
				errs = append(errs, where+": put the password in credentials.password_file or password_env, not in the URL")
			}
		}
		if r.RootDepth < 0 {
			errs = append(errs, where+": root_depth must not be negative")
		}
		c := r.Credentials
		if c.PasswordFile != "" && c.PasswordEnv != "" {
			errs = append(errs, where+": set credentials.password_file or password_env, not both")
		}
		if (c.SSHKeyFile == "") != (c.KnownHostsFile == "") {
			errs = append(errs, where+": credentials.ssh_key_file needs known_hosts_file (and the other way round)")
		}
	}
	return errs
}

// Policy configures the OPA/Rego authorization policy (docs/policy.md).
type Policy struct {
	// Dir holds the Rego modules, data files and Rego tests. Empty disables policy:
	// every authenticated caller may pull everything.
	Dir string `yaml:"dir"`
	// WatchInterval is how often Dir is checked for edits; a changed policy that
	// compiles and passes its tests replaces the one in force.
	WatchInterval Duration `yaml:"watch_interval"`
	// CacheSize bounds the decision cache (entries); 0 uses the default, -1 disables.
	CacheSize int `yaml:"cache_size"`
}

// Audit configures the audit trail (docs/audit.md). It needs the database; without
// one, requests are only logged.
type Audit struct {
	// Require refuses requests with 503 when neither PostgreSQL nor the local spool
	// can record them (fail-closed).
	Require bool `yaml:"require"`
	// SpoolDir is the local, fsync'd spool every event is written to before it is
	// shipped to PostgreSQL. One replica per directory.
	SpoolDir string `yaml:"spool_dir"`
	// WriterID names this replica's hash chain; defaults to replica.
	WriterID string `yaml:"writer_id"`
	// Retention drops monthly partitions older than this; 0 keeps everything.
	Retention Duration `yaml:"retention"`
	// MaxSpoolBytes bounds the spool; beyond it events go straight to PostgreSQL.
	MaxSpoolBytes int64 `yaml:"max_spool_bytes"`
}

// Auth configures how requests are authenticated (docs/authentication.md). Client
// certificates are configured under tls; a request presenting none is
// authenticated by an OIDC ID token or a modgate API token, sent as Bearer or as
// the Basic password that ~/.netrc produces.
type Auth struct {
	// Anonymous admits requests without credentials as the "anonymous" identity.
	// For loopback development only: Validate refuses it on other addresses.
	Anonymous bool `yaml:"anonymous"`
	// OIDC verifies ID tokens; enabled when oidc.issuer is set.
	OIDC auth.OIDCConfig `yaml:"oidc"`
	// APITokens accepts modgate API tokens (mgt_...); needs the database.
	APITokens bool `yaml:"api_tokens"`
	// LoginClientID and LoginScopes are published at /.well-known/modgate-login so
	// `modgate login https://proxy` needs no other flags.
	LoginClientID string   `yaml:"login_client_id"`
	LoginScopes   []string `yaml:"login_scopes"`
	// FailureBurst failed authentications from one source are allowed in a row,
	// one more per FailureRefill; beyond that the source gets 429.
	FailureBurst  int      `yaml:"failure_burst"`
	FailureRefill Duration `yaml:"failure_refill"`
}

// OIDCEnabled reports whether OIDC tokens are accepted.
func (a *Auth) OIDCEnabled() bool { return a.OIDC.Issuer != "" }

// Database configures PostgreSQL (API tokens, audit trail, replica coordination).
type Database struct {
	// URL is a PostgreSQL connection URL. Prefer url_file or the
	// MODGATE_DATABASE_URL environment variable for URLs with passwords.
	URL     string `yaml:"url"`
	URLFile string `yaml:"url_file"`
	// Migrate applies pending migrations at start-up.
	Migrate bool `yaml:"migrate"`
}

// DatabaseURL resolves the database URL from url, url_file or the environment;
// "" means no database.
func (c *Config) DatabaseURL() (string, error) {
	switch {
	case c.Database.URL != "":
		return c.Database.URL, nil
	case c.Database.URLFile != "":
		b, err := os.ReadFile(c.Database.URLFile)
		if err != nil {
			return "", fmt.Errorf("config: database.url_file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv("MODGATE_DATABASE_URL"), nil
}

// Cache configures the object cache.
type Cache struct {
	// Dir is where cached objects live on local disk.
	Dir string `yaml:"dir"`
	// ListTTL is how long @v/list, @latest and version queries are served before
	// asking upstream again.
	ListTTL Duration `yaml:"list_ttl"`
	// NegativeTTL is how long a not-found answer is remembered.
	NegativeTTL Duration `yaml:"negative_ttl"`
}

// Upstream configures the public mirror chain.
type Upstream struct {
	// Proxies is a GOPROXY-style list: "https://a,https://b|https://c". Empty means
	// the GOPROXY of modgate's own environment (without direct/off), or
	// https://proxy.golang.org when that is empty too.
	Proxies         string   `yaml:"proxies"`
	ConnectTimeout  Duration `yaml:"connect_timeout"`
	HeaderTimeout   Duration `yaml:"header_timeout"`
	BodyIdleTimeout Duration `yaml:"body_idle_timeout"`
	Retries         int      `yaml:"retries"`
	RetryBackoff    Duration `yaml:"retry_backoff"`
}

// SumDB configures the checksum database proxy.
type SumDB struct {
	// Names lists the checksum databases modgate proxies (answering "supported").
	Names []string `yaml:"names"`
	// LatestTTL is how long a signed tree head and partial tiles are cached.
	LatestTTL Duration `yaml:"latest_ttl"`
	// Verify checks every public .mod and .zip fetched from an upstream against the
	// checksum database named by Key before it is cached or served.
	Verify bool `yaml:"verify"`
	// Key is the verifier key of the database modgate verifies against
	// ("<name>+<hash>+<key>", as in GOSUMDB); the default is sum.golang.org's.
	Key string `yaml:"key"`
	// NoVerify lists GONOSUMDB-style path prefix patterns that are served without
	// verification (modules the checksum database cannot know). Private paths are
	// never looked up.
	NoVerify []string `yaml:"no_verify"`
}

// Log configures logging.
type Log struct {
	// Level is debug, info, warn or error.
	Level string `yaml:"level"`
}

// Server configures the HTTP server.
type Server struct {
	ReadHeaderTimeout Duration `yaml:"read_header_timeout"`
	IdleTimeout       Duration `yaml:"idle_timeout"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// RateLimit bounds each identity's request rate (429 with Retry-After beyond).
	RateLimit RateLimit `yaml:"rate_limit"`
}

// Defaults returns the configuration used for keys a file leaves out.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		Listen:  "127.0.0.1:8080",
		Replica: host,
		Cache: Cache{
			Dir:         "tmp/cache",
			ListTTL:     Duration(time.Minute),
			NegativeTTL: Duration(time.Minute),
		},
		Upstream: Upstream{
			ConnectTimeout:  Duration(5 * time.Second),
			HeaderTimeout:   Duration(30 * time.Second),
			BodyIdleTimeout: Duration(30 * time.Second),
			Retries:         2,
			RetryBackoff:    Duration(200 * time.Millisecond),
		},
		SumDB: SumDB{
			Names:     []string{"sum.golang.org"},
			LatestTTL: Duration(time.Minute),
			Verify:    true,
			Key:       defaultSumDBKey,
		},
		Log: Log{Level: "info"},
		Auth: Auth{
			APITokens:     true,
			FailureBurst:  20,
			FailureRefill: Duration(6 * time.Second),
		},
		Database: Database{Migrate: true},
		Private:  Private{Refresh: Duration(10 * time.Second), GitTimeout: Duration(5 * time.Minute)},
		Policy:   Policy{Dir: "policy", WatchInterval: Duration(time.Second)},
		Audit:    Audit{SpoolDir: "tmp/audit-spool", MaxSpoolBytes: 1 << 30},
		Server: Server{
			ReadHeaderTimeout: Duration(10 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			ShutdownTimeout:   Duration(30 * time.Second),
			RateLimit:         RateLimit{RequestsPerSecond: 1000, Burst: 5000},
		},
	}
}

// Load reads the file at path over the defaults. An empty path yields the defaults.
// Unknown keys are errors: a misspelt key silently ignored is a misconfiguration.
func Load(path string) (Config, error) {
	cfg := Defaults()
	if path == "" {
		return cfg, cfg.Validate()
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("config: %w", err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(&cfg); err != nil && !errors.Is(err, io.EOF) { // io.EOF: an empty file
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	return cfg, cfg.Validate()
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	var errs []string
	if c.Listen == "" {
		errs = append(errs, "listen must be set")
	}
	if c.Cache.Dir == "" {
		errs = append(errs, "cache.dir must be set")
	}
	if c.Publish.MaxZipSize < 0 || c.Publish.MaxZipSize > maxZipFile {
		errs = append(errs, fmt.Sprintf("publish.max_zip_size must be between 0 (the default, %d) and %d bytes", maxZipFile, maxZipFile))
	}
	if c.Cache.ListTTL < 0 || c.Cache.NegativeTTL < 0 || c.SumDB.LatestTTL < 0 {
		errs = append(errs, "TTLs must not be negative")
	}
	if c.Upstream.Retries < 0 || c.Upstream.Retries > 10 {
		errs = append(errs, "upstream.retries must be between 0 and 10")
	}
	if c.Upstream.RetryBackoff <= 0 {
		errs = append(errs, "upstream.retry_backoff must be positive")
	}
	errs = append(errs, c.SumDB.validate()...)
	errs = append(errs, c.Server.RateLimit.validate()...)
	for _, n := range c.SumDB.Names {
		if n == "" || strings.ContainsAny(n, "/ \\") {
			errs = append(errs, fmt.Sprintf("sumdb.names: invalid name %q", n))
		}
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		errs = append(errs, fmt.Sprintf("log.level %q: want debug, info, warn or error", c.Log.Level))
	}
	if c.TLS.CertFile != "" || c.TLS.KeyFile != "" {
		if err := c.TLS.Validate(); err != nil {
			errs = append(errs, err.Error())
		}
	} else if !isLoopback(c.Listen) {
		errs = append(errs, fmt.Sprintf("listen %s is not a loopback address: plain HTTP is for loopback development only; set tls.cert_file and tls.key_file", c.Listen))
	}
	errs = append(errs, c.Private.validate()...)
	if c.Auth.Anonymous && !isLoopback(c.Listen) {
		errs = append(errs, "auth.anonymous is for loopback development only")
	}
	if c.Auth.OIDCEnabled() {
		if err := c.Auth.OIDC.Validate(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	if c.Database.URL != "" && c.Database.URLFile != "" {
		errs = append(errs, "database: set url or url_file, not both")
	}
	if c.Auth.FailureBurst < 0 || c.Auth.FailureRefill < 0 {
		errs = append(errs, "auth: failure limits must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// TLSEnabled reports whether modgate terminates TLS.
func (c *Config) TLSEnabled() bool { return c.TLS.CertFile != "" }

func isLoopback(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// UpstreamList returns the configured mirror list, falling back to the
// environment's GOPROXY and then to the public mirror.
func (c *Config) UpstreamList() string {
	if c.Upstream.Proxies != "" {
		return c.Upstream.Proxies
	}
	if env := os.Getenv("GOPROXY"); env != "" {
		return env
	}
	return "https://proxy.golang.org"
}

// Duration is a time.Duration written as "30s" or "5m" in YAML.
type Duration time.Duration

func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: invalid duration %q (want e.g. 30s, 5m)", n.Line, n.Value)
	}
	*d = Duration(v)
	return nil
}

func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// D returns d as a time.Duration.
func (d Duration) D() time.Duration { return time.Duration(d) }
