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
	Console  Console        `yaml:"console"`
}

// Console configures the web console at /ui (docs/console.md). Callers with a
// verified client certificate need no sign-in; everyone else signs in with the
// authorization-code flow (PKCE) against auth.oidc.issuer.
type Console struct {
	// Enabled serves the console at /ui.
	Enabled bool `yaml:"enabled"`
	// ClientID is the console's OIDC client; empty: certificate sign-in only.
	ClientID string `yaml:"client_id"`
	// ClientSecretFile holds the client secret of a confidential client; empty: a
	// public client, protected by PKCE alone.
	ClientSecretFile string `yaml:"client_secret_file"`
	// RedirectURL is the callback registered at the IdP:
	// https://modgate.corp.example/ui/callback.
	RedirectURL string `yaml:"redirect_url"`
	// Scopes requested at sign-in; empty: openid, profile, email, groups.
	Scopes []string `yaml:"scopes"`
	// SessionKeyFile holds at least 32 random bytes that seal session cookies.
	// Replicas behind one load balancer must share it; empty: a key generated at
	// start, so sessions end with a restart and do not cross replicas.
	SessionKeyFile string `yaml:"session_key_file"`
	// SessionTTL bounds a console session.
	SessionTTL Duration `yaml:"session_ttl"`
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
// upstream mirror or looked up in the checksum database, under any error.
type Private struct {
	// Patterns is a GOPRIVATE-style comma-separated list of glob path prefixes,
	// e.g. "corp.example/*,git.corp.example".
	Patterns string `yaml:"patterns"`
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
		},
		Log: Log{Level: "info"},
		Auth: Auth{
			APITokens:     true,
			FailureBurst:  20,
			FailureRefill: Duration(6 * time.Second),
		},
		Database: Database{Migrate: true},
		Console:  Console{Enabled: true, SessionTTL: Duration(8 * time.Hour)},
		Policy:   Policy{Dir: "policy", WatchInterval: Duration(time.Second)},
		Audit:    Audit{SpoolDir: "tmp/audit-spool", MaxSpoolBytes: 1 << 30},
		Server: Server{
			ReadHeaderTimeout: Duration(10 * time.Second),
			IdleTimeout:       Duration(120 * time.Second),
			ShutdownTimeout:   Duration(30 * time.Second),
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
	for _, p := range strings.Split(c.Private.Patterns, ",") {
		if p = strings.TrimSpace(p); p != "" {
			if _, err := path.Match(p, p); err != nil {
				errs = append(errs, fmt.Sprintf("private.patterns: invalid glob %q", p))
			}
		}
	}
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
	if c.Console.ClientID != "" {
		if !c.Auth.OIDCEnabled() {
			errs = append(errs, "console.client_id needs auth.oidc.issuer")
		}
		if u, err := url.Parse(c.Console.RedirectURL); err != nil || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && isLoopback(u.Host))) {
			errs = append(errs, "console.redirect_url must be an https URL ending in /ui/callback")
		} else if !strings.HasSuffix(u.Path, "/ui/callback") {
			errs = append(errs, "console.redirect_url must end in /ui/callback")
		}
	}
	if c.Console.SessionTTL <= 0 {
		errs = append(errs, "console.session_ttl must be positive")
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
