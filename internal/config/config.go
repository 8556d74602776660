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
	Storage  Storage  `yaml:"storage"`
	Upstream Upstream `yaml:"upstream"`
	SumDB    SumDB    `yaml:"sumdb"`
	Log      Log      `yaml:"log"`
	Server   Server   `yaml:"server"`
	// TLS terminates TLS and configures client certificates (docs/mtls.md). Without
	// tls.cert_file modgate serves plain HTTP, which Validate allows only on loopback.
	Private  Private        `yaml:"private"`
	Policy   Policy         `yaml:"policy"`
	TLS      auth.TLSConfig `yaml:"tls"`
	Auth     Auth           `yaml:"auth"`
	Database Database       `yaml:"database"`
}

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

// Storage says where cached and published objects live (docs/operations.md).
type Storage struct {
	// Backend is "disk" (objects under cache.dir) or "s3" (objects in a bucket
	// that every replica shares; cache.dir then holds only fills in progress).
	Backend string `yaml:"backend"`
	S3      S3     `yaml:"s3"`
}

// S3 locates an S3-compatible bucket. Credentials come from access_key_file and
// secret_key_file, or else from MODGATE_S3_ACCESS_KEY and MODGATE_S3_SECRET_KEY;
// none at all means anonymous access.
type S3 struct {
	// Endpoint is host[:port] of the S3 API, e.g. s3.eu-west-1.amazonaws.com.
	Endpoint string `yaml:"endpoint"`
	Bucket   string `yaml:"bucket"`
	// Prefix is prepended to every object key, so one bucket can serve several
	// installations.
	Prefix        string `yaml:"prefix"`
	Region        string `yaml:"region"`
	AccessKeyFile string `yaml:"access_key_file"`
	SecretKeyFile string `yaml:"secret_key_file"`
	// PathStyle addresses endpoint/bucket instead of bucket.endpoint (MinIO, Ceph).
	PathStyle bool `yaml:"path_style"`
	// Insecure speaks plain HTTP to the endpoint: loopback or trusted networks only.
	Insecure bool `yaml:"insecure"`
	// CAFile replaces the system roots for the endpoint's certificate.
	CAFile string `yaml:"ca_file"`
}

// S3Credentials resolves the access and secret keys from the key files or the
// environment.
func (c *Config) S3Credentials() (accessKey, secretKey string, err error) {
	s := c.Storage.S3
	if s.AccessKeyFile != "" || s.SecretKeyFile != "" {
		a, err := os.ReadFile(s.AccessKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("config: storage.s3.access_key_file: %w", err)
		}
		k, err := os.ReadFile(s.SecretKeyFile)
		if err != nil {
			return "", "", fmt.Errorf("config: storage.s3.secret_key_file: %w", err)
		}
		return strings.TrimSpace(string(a)), strings.TrimSpace(string(k)), nil
	}
	return os.Getenv("MODGATE_S3_ACCESS_KEY"), os.Getenv("MODGATE_S3_SECRET_KEY"), nil
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
		Storage: Storage{Backend: "disk"},
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
		Policy:   Policy{Dir: "policy", WatchInterval: Duration(time.Second)},
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
	switch c.Storage.Backend {
	case "disk":
	case "s3":
		s := c.Storage.S3
		if s.Endpoint == "" || s.Bucket == "" {
			errs = append(errs, "storage.s3: endpoint and bucket must be set")
		}
		if strings.Contains(s.Endpoint, "://") {
			errs = append(errs, "storage.s3.endpoint: host[:port] without a scheme (insecure: true for plain HTTP)")
		}
		if (s.AccessKeyFile == "") != (s.SecretKeyFile == "") {
			errs = append(errs, "storage.s3: set both access_key_file and secret_key_file, or neither")
		}
		if s.Insecure && s.CAFile != "" {
			errs = append(errs, "storage.s3: insecure and ca_file contradict each other")
		}
	default:
		errs = append(errs, fmt.Sprintf("storage.backend %q: want disk or s3", c.Storage.Backend))
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
