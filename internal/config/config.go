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
	"path/filepath"
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
	Audit    Audit          `yaml:"audit"`
	TLS      auth.TLSConfig `yaml:"tls"`
	Auth     Auth           `yaml:"auth"`
	Database Database       `yaml:"database"`
	Publish  Publish        `yaml:"publish"`
	// Mirror schedules pre-warm syncs run inside `modgate serve` (docs/mirror.md).
	Mirror  Mirror  `yaml:"mirror"`
	Console Console `yaml:"console"`
	// VulnDB serves the Go vulnerability database (docs/vulnerabilities.md).
	VulnDB VulnDB `yaml:"vulndb"`
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
// upstream mirror or looked up in the checksum database, under any error. Paths
// matched by a route are served from the company's git servers
// (docs/private-modules.md); other private paths answer 404.
type Private struct {
	// Patterns is a GOPRIVATE-style comma-separated list of glob path prefixes,
	// e.g. "corp.example/*,git.corp.example"; the file may also give it as a YAML
	// list. The routes' patterns are private too.
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
	// PinCopyRefresh is how often, while the database is up, each replica
	// refreshes its own copy of the ledger's pins and the published versions
	// (<cache.dir>/.private-pins.json), which it serves private versions by
	// while the database is unreachable; a pin, publish or delete on this
	// replica refreshes it within a second too.
	PinCopyRefresh Duration `yaml:"pin_copy_refresh"`
}

// PrivateRoute maps module paths matching Pattern to repositories.
type PrivateRoute struct {
	// Pattern is a GOPRIVATE-style glob list, e.g. "corp.example/*" (a
	// comma-separated string or a YAML list).
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
				errs = append(errs, fmt.Sprintf("private: invalid glob %q (want GOPRIVATE-style path prefix globs, comma-separated or a YAML list)", pat))
			}
		}
	}
	if p.PinCopyRefresh <= 0 {
		errs = append(errs, "private.pin_copy_refresh must be a positive duration (e.g. 30s)")
	}
	if p.Refresh < 0 || p.GitTimeout < 0 {
		errs = append(errs, "private.refresh and private.git_timeout must not be negative (a duration such as 10s)")
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
	// shipped to PostgreSQL. One replica per directory; empty means
	// <cache.dir>/.audit-spool, which is per replica like the cache directory.
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
	// APITokenStaleIfError is how long after the database last confirmed an API
	// token it is still accepted, with the identity it had then, while the
	// database is unreachable; 0 refuses every token the database cannot
	// confirm (503). SECURITY.md states the trade-off.
	APITokenStaleIfError Duration `yaml:"api_token_stale_if_error"`
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
	// StatementTimeout bounds every statement of the requests' connections
	// (PostgreSQL's statement_timeout), so a slow database makes a request
	// answer 503 instead of wait; 0 leaves the server's setting. Migrations,
	// the audit writer, the revocation listener and the fill lock's
	// connections run without it.
	StatementTimeout Duration `yaml:"statement_timeout"`
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
	// MemoryBytes bounds the memory holding public versions' .info and .mod
	// files once served (each at most 16 KiB), so warm hits skip the store; 0
	// turns it off.
	MemoryBytes int64 `yaml:"memory_bytes"`
	// PrefetchZips is how many public zips are fetched and verified at once
	// ahead of their request, each when its version's .info is first fetched;
	// 0 turns prefetching off.
	PrefetchZips int `yaml:"prefetch_zips"`
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
	// Mirrors is the chain with per-mirror TLS, credentials, timeouts and
	// concurrency (docs/mirror.md). It replaces proxies: setting both is an error,
	// and with mirrors set modgate's own $GOPROXY is not consulted.
	Mirrors []UpstreamMirror `yaml:"mirrors"`
	// Offline serves only what is cached; everything else is a 404 "not in the
	// offline mirror". No upstream is contacted.
	Offline bool `yaml:"offline"`
}

// UpstreamMirror is one mirror of upstream.mirrors, with its own connection
// settings: an internal Artifactory or Nexus behind a private CA, requiring a
// client certificate or Basic credentials.
type UpstreamMirror struct {
	URL string `yaml:"url"`
	// OnError is what a failure other than 404/410 does: "fail" (default, like
	// "," in GOPROXY) surfaces it, "next" (like "|") tries the next mirror.
	OnError string `yaml:"on_error"`
	// CAFile is a PEM bundle trusted for this mirror instead of the system roots.
	CAFile string `yaml:"ca_file"`
	// ClientCertFile and ClientKeyFile are presented to mirrors that require mTLS.
	ClientCertFile string `yaml:"client_cert_file"`
	ClientKeyFile  string `yaml:"client_key_file"`
	// Username and PasswordFile are sent as HTTP Basic credentials.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Timeouts override upstream.*_timeout for this mirror; 0 keeps those.
	ConnectTimeout  Duration `yaml:"connect_timeout"`
	HeaderTimeout   Duration `yaml:"header_timeout"`
	BodyIdleTimeout Duration `yaml:"body_idle_timeout"`
	// MaxConcurrency bounds concurrent requests to this mirror; 0 is unlimited.
	MaxConcurrency int `yaml:"max_concurrency"`
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
	// WriteTimeout bounds writing a whole response on every route except the
	// streamed module objects; 0 disables it.
	WriteTimeout Duration `yaml:"write_timeout"`
	// WriteProgressTimeout bounds each write of a streamed module object (a zip
	// to a slow client may take long, but every chunk must get through within
	// this); 0 disables it.
	WriteProgressTimeout Duration `yaml:"write_progress_timeout"`
	// MetricsTokenFile, when set, names a file holding a bearer token that
	// /metrics requires; empty leaves /metrics open (bind the listener to a
	// trusted network).
	MetricsTokenFile string `yaml:"metrics_token_file"`
	// ShutdownTimeout bounds the graceful drain on SIGTERM.
	ShutdownTimeout Duration `yaml:"shutdown_timeout"`
	// HTTP2 offers HTTP/2 to TLS clients beside HTTP/1.1 (ALPN). Off, every
	// client speaks HTTP/1.1: the go command then downloads a large graph over
	// several connections instead of one, which measured faster here
	// (docs/benchmarks.md). Without TLS modgate speaks HTTP/1.1 only.
	HTTP2 bool `yaml:"http2"`
	// RateLimit bounds each identity's request rate (429 with Retry-After beyond).
	RateLimit RateLimit `yaml:"rate_limit"`
}

// Validate checks one mirror entry.
func (m *UpstreamMirror) Validate() error {
	u, err := url.Parse(m.URL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("upstream.mirrors: invalid url %q: need http(s)://host[/path]", m.URL)
	}
	if u.User != nil {
		return fmt.Errorf("upstream.mirrors: %s: put credentials in username and password_file, not the URL", u.Host)
	}
	if (m.ClientCertFile == "") != (m.ClientKeyFile == "") {
		return fmt.Errorf("upstream.mirrors: %s: client_cert_file and client_key_file go together", u.Host)
	}
	if (m.Username == "") != (m.PasswordFile == "") {
		return fmt.Errorf("upstream.mirrors: %s: username and password_file go together", u.Host)
	}
	if u.Scheme == "http" && (m.Username != "" || m.ClientCertFile != "" || m.CAFile != "") {
		return fmt.Errorf("upstream.mirrors: %s: credentials and TLS settings need an https url", u.Host)
	}
	if m.MaxConcurrency < 0 || m.ConnectTimeout < 0 || m.HeaderTimeout < 0 || m.BodyIdleTimeout < 0 {
		return fmt.Errorf("upstream.mirrors: %s: timeouts and max_concurrency must not be negative", u.Host)
	}
	switch m.OnError {
	case "", "fail", "next":
	default:
		return fmt.Errorf("upstream.mirrors: %s: on_error %q: want fail or next", u.Host, m.OnError)
	}
	return nil
}

// Mirror configures mirror operations inside `modgate serve`.
type Mirror struct {
	// Sync lists scheduled pre-warm jobs.
	Sync []SyncJob `yaml:"sync"`
}

// SyncJob re-syncs a list of modules into the cache on a schedule.
type SyncJob struct {
	// Every is the interval between runs; the first run starts one interval after
	// start-up unless on_start is set.
	Every   Duration `yaml:"every"`
	OnStart bool     `yaml:"on_start"`
	// Modules are module paths (each synced at its latest N versions) or exact
	// module@version entries.
	Modules []string `yaml:"modules"`
	// Latest is how many of the newest release versions of each bare module path to
	// sync; 0 means 1.
	Latest int `yaml:"latest"`
	// Concurrency bounds parallel fetches; 0 means 4.
	Concurrency int `yaml:"concurrency"`
}

// Defaults returns the configuration used for keys a file leaves out.
func Defaults() Config {
	host, _ := os.Hostname()
	return Config{
		Listen:  "127.0.0.1:8080",
		Replica: host,
		Cache: Cache{
			Dir:          "tmp/cache",
			ListTTL:      Duration(time.Minute),
			NegativeTTL:  Duration(time.Minute),
			MemoryBytes:  32 << 20,
			PrefetchZips: 4,
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
			Verify:    true,
			Key:       defaultSumDBKey,
		},
		Log: Log{Level: "info"},
		Auth: Auth{
			APITokens:            true,
			APITokenStaleIfError: Duration(30 * time.Minute),
			FailureBurst:         20,
			FailureRefill:        Duration(6 * time.Second),
		},
		Database: Database{Migrate: true, StatementTimeout: Duration(10 * time.Second)},
		Private:  Private{Refresh: Duration(10 * time.Second), GitTimeout: Duration(5 * time.Minute), PinCopyRefresh: Duration(30 * time.Second)},
		Console:  Console{Enabled: true, SessionTTL: Duration(8 * time.Hour)},
		Policy:   Policy{Dir: "policy", WatchInterval: Duration(time.Second)},
		Audit:    Audit{MaxSpoolBytes: 1 << 30},
		Server: Server{
			ReadHeaderTimeout:    Duration(10 * time.Second),
			IdleTimeout:          Duration(120 * time.Second),
			WriteTimeout:         Duration(60 * time.Second),
			WriteProgressTimeout: Duration(30 * time.Second),
			ShutdownTimeout:      Duration(30 * time.Second),
			HTTP2:                true,
			RateLimit:            RateLimit{RequestsPerSecond: 1000, Burst: 5000, Unauthenticated: UnauthenticatedLimit{RequestsPerSecond: 5, Burst: 50, SummaryInterval: Duration(time.Minute)}},
		},
		VulnDB: defaultVulnDB(),
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
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, err)
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	err = dec.Decode(&cfg)
	if errors.Is(err, io.EOF) { // an empty file
		err = nil
	}
	if err != nil {
		err = dropListErrors(err, joinListKeys(&doc, &cfg))
	}
	if err != nil {
		return Config{}, fmt.Errorf("config: %s: %w", path, indexKeys(&doc).explainError(err))
	}
	return cfg, cfg.Validate()
}

// Validate reports the first invalid setting.
func (c *Config) Validate() error {
	var errs []string
	if c.Listen == "" {
		errs = append(errs, "listen must be set")
	}
	if err := c.VulnDB.Validate(); err != nil {
		errs = append(errs, err.Error())
	}
	if c.Cache.Dir == "" {
		errs = append(errs, "cache.dir must be set")
	}
	if c.Publish.MaxZipSize < 0 || c.Publish.MaxZipSize > maxZipFile {
		errs = append(errs, fmt.Sprintf("publish.max_zip_size must be between 0 (the default, %d) and %d bytes", maxZipFile, maxZipFile))
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
	for _, ttl := range []struct {
		key string
		d   Duration
	}{{"cache.list_ttl", c.Cache.ListTTL}, {"cache.negative_ttl", c.Cache.NegativeTTL}, {"sumdb.latest_ttl", c.SumDB.LatestTTL}} {
		if ttl.d < 0 {
			errs = append(errs, fmt.Sprintf("%s must not be negative (a duration such as 1m; 0 disables)", ttl.key))
		}
	}
	if c.Cache.MemoryBytes < 0 {
		errs = append(errs, "cache.memory_bytes must not be negative (0 keeps nothing in memory)")
	}
	if c.Cache.PrefetchZips < 0 || c.Cache.PrefetchZips > 64 {
		errs = append(errs, fmt.Sprintf("cache.prefetch_zips %d: want a whole number between 0 (off) and 64", c.Cache.PrefetchZips))
	}
	if c.Upstream.Retries < 0 || c.Upstream.Retries > 10 {
		errs = append(errs, fmt.Sprintf("upstream.retries %d: want a whole number between 0 and 10", c.Upstream.Retries))
	}
	if c.Upstream.RetryBackoff <= 0 {
		errs = append(errs, "upstream.retry_backoff must be a positive duration (e.g. 200ms)")
	}
	errs = append(errs, c.SumDB.validate()...)
	errs = append(errs, c.Server.RateLimit.validate()...)
	if c.Server.WriteTimeout < 0 || c.Server.WriteProgressTimeout < 0 {
		errs = append(errs, "server.write_timeout and server.write_progress_timeout must not be negative")
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
		errs = append(errs, "database.url and database.url_file: set one, not both")
	}
	if st := c.Database.StatementTimeout.D(); st != 0 && st < 100*time.Millisecond {
		errs = append(errs, "database.statement_timeout must be 0 (off) or at least 100ms")
	}
	if c.Upstream.Proxies != "" && len(c.Upstream.Mirrors) > 0 {
		errs = append(errs, "upstream.proxies and upstream.mirrors: set proxies or mirrors, not both")
	}
	for i := range c.Upstream.Mirrors {
		if err := c.Upstream.Mirrors[i].Validate(); err != nil {
			errs = append(errs, err.Error())
		}
	}
	for i, j := range c.Mirror.Sync {
		if j.Every.D() < time.Minute {
			errs = append(errs, fmt.Sprintf("mirror.sync[%d].every must be at least 1m", i))
		}
		if len(j.Modules) == 0 {
			errs = append(errs, fmt.Sprintf("mirror.sync[%d].modules must not be empty", i))
		}
		if j.Latest < 0 || j.Latest > 100 || j.Concurrency < 0 || j.Concurrency > 64 {
			errs = append(errs, fmt.Sprintf("mirror.sync[%d]: latest must be 0..100 and concurrency 0..64", i))
		}
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
		errs = append(errs, "console.session_ttl must be a positive duration (e.g. 8h)")
	}
	if c.Auth.APITokenStaleIfError < 0 {
		return errors.New("config: auth.api_token_stale_if_error must not be negative")
	}
	if c.Auth.FailureBurst < 0 || c.Auth.FailureRefill < 0 {
		errs = append(errs, "auth.failure_burst and auth.failure_refill must not be negative")
	}
	if len(errs) > 0 {
		return fmt.Errorf("config: %s", strings.Join(errs, "; "))
	}
	return nil
}

// AuditSpoolDir resolves audit.spool_dir.
func (c *Config) AuditSpoolDir() string {
	if c.Audit.SpoolDir != "" {
		return c.Audit.SpoolDir
	}
	return filepath.Join(c.Cache.Dir, ".audit-spool")
}

// PinCopyFile is where a replica keeps its copy of the ledger's pins and the
// published versions (internal/pinstore).
func (c *Config) PinCopyFile() string { return filepath.Join(c.Cache.Dir, ".private-pins.json") }

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
	if len(c.Upstream.Mirrors) > 0 {
		names := make([]string, len(c.Upstream.Mirrors))
		for i, m := range c.Upstream.Mirrors {
			names[i] = m.URL
		}
		return strings.Join(names, ",")
	}
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
