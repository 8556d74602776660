package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// The example file documents every key with its default; it must load to exactly
// the defaults, so it cannot drift from the code.
func TestExampleFileIsTheDefaults(t *testing.T) {
	cfg, err := Load("../../deploy/modgate.example.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := Defaults()
	if !reflect.DeepEqual(cfg, want) {
		t.Errorf("example file differs from Defaults():\n got %+v\nwant %+v", cfg, want)
	}
}

func TestLoad(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		wantErr string
		check   func(*testing.T, Config)
	}{
		{name: "ok/empty-file", yaml: "", check: func(t *testing.T, c Config) {
			if c.Listen != "127.0.0.1:8080" {
				t.Errorf("listen = %q", c.Listen)
			}
		}},
		{name: "ok/durations", yaml: "cache:\n  list_ttl: 5m\n", check: func(t *testing.T, c Config) {
			if c.Cache.ListTTL.D() != 5*time.Minute || c.Cache.NegativeTTL.D() != time.Minute {
				t.Errorf("ttl = %v / %v", c.Cache.ListTTL.D(), c.Cache.NegativeTTL.D())
			}
		}},
		{name: "ok/statement-timeout-default", yaml: "", check: func(t *testing.T, c Config) {
			if c.Database.StatementTimeout.D() != 10*time.Second {
				t.Errorf("database.statement_timeout = %v, want 10s", c.Database.StatementTimeout.D())
			}
		}},
		{name: "ok/statement-timeout-off", yaml: "database:\n  statement_timeout: 0s\n", check: func(t *testing.T, c Config) {
			if c.Database.StatementTimeout.D() != 0 {
				t.Errorf("database.statement_timeout = %v, want 0", c.Database.StatementTimeout.D())
			}
		}},
		{name: "ok/http2-default-on", yaml: "", check: func(t *testing.T, c Config) {
			if !c.Server.HTTP2 {
				t.Error("server.http2 = false by default, want true")
			}
		}},
		{name: "ok/http2-off", yaml: "server:\n  http2: false\n", check: func(t *testing.T, c Config) {
			if c.Server.HTTP2 {
				t.Error("server.http2: false loaded as true")
			}
		}},
		{name: "fail/statement-timeout-tiny", yaml: "database:\n  statement_timeout: 10ms\n", wantErr: "database.statement_timeout must be 0 (off) or at least 100ms"},
		{name: "fail/statement-timeout-negative", yaml: "database:\n  statement_timeout: -1s\n", wantErr: "database.statement_timeout must be 0 (off) or at least 100ms"},
		{name: "fail/unknown-key", yaml: "cache:\n  ttl: 5m\n", wantErr: "line 2: unknown key cache.ttl"},
		{name: "fail/bad-duration", yaml: "cache:\n  list_ttl: five\n", wantErr: `line 2: cache.list_ttl: invalid duration "five" (want e.g. 30s, 5m)`},
		{name: "fail/list-for-string", yaml: "log:\n  level:\n    - info\n", wantErr: "line 3: log.level: want a string, got a list"},
		{name: "fail/string-for-number", yaml: "upstream:\n  retries: many\n", wantErr: `line 2: upstream.retries: want a whole number, got a string "many"`},
		{name: "fail/string-for-section", yaml: "cache: tmp\n", wantErr: `line 1: cache: want a mapping, got a string "tmp"`},
		{name: "fail/list-item", yaml: "private:\n  routes:\n    - pattern: a.example\n      repo: https://g/{path}\n      root_depth: deep\n", wantErr: `line 5: private.routes[0].root_depth: want a whole number, got a string "deep"`},
		{name: "ok/private-patterns-list", yaml: "private:\n  patterns:\n    - corp.example/*\n    - git.corp.example\n  routes:\n    - pattern: [b.example/*, c.example]\n      repo: https://git.example/{path}\n", check: func(t *testing.T, c Config) {
			if c.Private.Patterns != "corp.example/*,git.corp.example" {
				t.Errorf("patterns = %q", c.Private.Patterns)
			}
			if got := c.Private.AllPatterns(); got != "corp.example/*,git.corp.example,b.example/*,c.example" {
				t.Errorf("AllPatterns = %q", got)
			}
		}},
		{name: "ok/private-patterns-string", yaml: "private:\n  patterns: corp.example/*,git.corp.example\n", check: func(t *testing.T, c Config) {
			if c.Private.Patterns != "corp.example/*,git.corp.example" {
				t.Errorf("patterns = %q", c.Private.Patterns)
			}
		}},
		{name: "fail/private-patterns-list-of-maps", yaml: "private:\n  patterns:\n    - {a: b}\n", wantErr: "line 3: private.patterns: want a string, got a list"},
		{name: "fail/negative-ttl", yaml: "cache:\n  negative_ttl: -1s\n", wantErr: "cache.negative_ttl must not be negative"},
		{name: "fail/bad-level", yaml: "log:\n  level: loud\n", wantErr: "log.level"},
		{name: "fail/retries", yaml: "upstream:\n  retries: 99\n", wantErr: "upstream.retries"},
		{name: "ok/s3", yaml: "storage:\n  backend: s3\n  s3: {endpoint: \"minio:9000\", bucket: modgate, path_style: true}\n", check: func(t *testing.T, c Config) {
			if c.Storage.Backend != "s3" || c.Storage.S3.Bucket != "modgate" || !c.Storage.S3.PathStyle {
				t.Errorf("storage = %+v", c.Storage)
			}
		}},
		{name: "fail/backend", yaml: "storage:\n  backend: nfs\n", wantErr: "storage.backend"},
		{name: "fail/s3-no-bucket", yaml: "storage:\n  backend: s3\n  s3: {endpoint: \"minio:9000\"}\n", wantErr: "endpoint and bucket"},
		{name: "fail/s3-scheme", yaml: "storage:\n  backend: s3\n  s3: {endpoint: \"https://minio\", bucket: b}\n", wantErr: "without a scheme"},
		{name: "fail/s3-half-keys", yaml: "storage:\n  backend: s3\n  s3: {endpoint: m, bucket: b, access_key_file: /a}\n", wantErr: "access_key_file and secret_key_file"},
		{name: "fail/sumdb-name", yaml: "sumdb:\n  names: [\"a/b\"]\n", wantErr: "sumdb.names"},
		{name: "ok/private-route", yaml: "private:\n  routes:\n    - pattern: corp.example/*\n      repo: https://git.corp.example/{path}.git\n      credentials: {username: u, password_env: TOKEN}\n", check: func(t *testing.T, c Config) {
			if got := c.Private.AllPatterns(); got != "corp.example/*" {
				t.Errorf("AllPatterns = %q", got)
			}
			if r := c.Private.Routes[0]; r.Repo != "https://git.corp.example/{path}.git" || r.Credentials.Username != "u" {
				t.Errorf("route = %+v", r)
			}
		}},
		{name: "ok/private-union", yaml: "private:\n  patterns: a.example\n  routes:\n    - {pattern: b.example/*, repo: \"ssh://git@b.example/{path}\", credentials: {ssh_key_file: k, known_hosts_file: h}}\n", check: func(t *testing.T, c Config) {
			if got := c.Private.AllPatterns(); got != "a.example,b.example/*" {
				t.Errorf("AllPatterns = %q", got)
			}
		}},
		{name: "fail/private-route-no-placeholder", yaml: "private:\n  routes:\n    - {pattern: b.example/*, repo: \"https://git.example/app.git\"}\n", wantErr: "must contain {root} or {path}"},
		{name: "fail/private-route-file-scheme", yaml: "private:\n  routes:\n    - {pattern: b.example/*, repo: \"file:///srv/{path}\"}\n", wantErr: "https://, http:// or ssh://"},
		{name: "fail/private-route-password-in-url", yaml: "private:\n  routes:\n    - {pattern: b.example/*, repo: \"https://u:p@git.example/{path}\"}\n", wantErr: "not in the URL"},
		{name: "fail/private-route-both-passwords", yaml: "private:\n  routes:\n    - {pattern: b.example/*, repo: \"https://git.example/{path}\", credentials: {password_file: f, password_env: E}}\n", wantErr: "not both"},
		{name: "fail/private-route-ssh-without-known-hosts", yaml: "private:\n  routes:\n    - {pattern: b.example/*, repo: \"ssh://git.example/{path}\", credentials: {ssh_key_file: k}}\n", wantErr: "known_hosts_file"},
		{name: "fail/private-route-bad-glob", yaml: "private:\n  routes:\n    - {pattern: \"b.example/[\", repo: \"https://git.example/{path}\"}\n", wantErr: "invalid glob"},
		{name: "ok/mirrors", yaml: "upstream:\n  offline: true\n  mirrors:\n    - url: https://nexus.corp.example/go\n      ca_file: ca.pem\n      username: ci\n      password_file: pw\n      header_timeout: 1m\n      max_concurrency: 8\n      on_error: next\n", check: func(t *testing.T, c Config) {
			m := c.Upstream.Mirrors[0]
			if !c.Upstream.Offline || m.URL != "https://nexus.corp.example/go" || m.HeaderTimeout.D() != time.Minute || m.MaxConcurrency != 8 || m.OnError != "next" {
				t.Errorf("mirror = %+v", m)
			}
			if c.UpstreamList() != "https://nexus.corp.example/go" {
				t.Errorf("UpstreamList = %q", c.UpstreamList())
			}
		}},
		{name: "fail/proxies-and-mirrors", yaml: "upstream:\n  proxies: https://a\n  mirrors: [{url: https://b}]\n", wantErr: "proxies or mirrors, not both"},
		{name: "fail/mirror-credentials-in-url", yaml: "upstream:\n  mirrors: [{url: \"https://u:p@b\"}]\n", wantErr: "not the URL"},
		{name: "fail/mirror-cert-without-key", yaml: "upstream:\n  mirrors: [{url: https://b, client_cert_file: c.pem}]\n", wantErr: "go together"},
		{name: "fail/mirror-credentials-over-http", yaml: "upstream:\n  mirrors: [{url: http://b, username: u, password_file: p}]\n", wantErr: "need an https url"},
		{name: "ok/sync-job", yaml: "mirror:\n  sync:\n    - every: 24h\n      modules: [golang.org/x/text]\n      latest: 3\n", check: func(t *testing.T, c Config) {
			if j := c.Mirror.Sync[0]; j.Every.D() != 24*time.Hour || j.Latest != 3 || j.Modules[0] != "golang.org/x/text" {
				t.Errorf("job = %+v", j)
			}
		}},
		{name: "fail/sync-too-often", yaml: "mirror:\n  sync: [{every: 1s, modules: [a.test/x]}]\n", wantErr: "at least 1m"},
		{name: "fail/sync-no-modules", yaml: "mirror:\n  sync: [{every: 1h}]\n", wantErr: "modules must not be empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := filepath.Join(t.TempDir(), "c.yaml")
			os.WriteFile(p, []byte(tt.yaml), 0o644)
			cfg, err := Load(p)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			tt.check(t, cfg)
		})
	}
}

func TestUpstreamListFallsBackToEnvironment(t *testing.T) {
	c := Defaults()
	t.Setenv("GOPROXY", "https://goproxy.example,direct")
	if got := c.UpstreamList(); got != "https://goproxy.example,direct" {
		t.Errorf("got %q", got)
	}
	t.Setenv("GOPROXY", "")
	if got := c.UpstreamList(); got != "https://proxy.golang.org" {
		t.Errorf("got %q", got)
	}
	c.Upstream.Proxies = "https://a"
	if got := c.UpstreamList(); got != "https://a" {
		t.Errorf("got %q", got)
	}
}

func TestConsoleValidate(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		mutate  func(*Config)
		wantErr string
	}{
		{name: "ok/defaults", mutate: func(*Config) {}},
		{name: "ok/oidc-client", mutate: func(c *Config) {
			c.Auth.OIDC.Issuer, c.Auth.OIDC.Audiences = "https://idp.example", []string{"modgate-cli"}
			c.Console.ClientID, c.Console.RedirectURL = "modgate-console", "https://modgate.example/ui/callback"
		}},
		{name: "fail/client-without-issuer", mutate: func(c *Config) {
			c.Console.ClientID, c.Console.RedirectURL = "modgate-console", "https://modgate.example/ui/callback"
		}, wantErr: "console.client_id needs auth.oidc.issuer"},
		{name: "fail/plain-http-redirect", mutate: func(c *Config) {
			c.Auth.OIDC.Issuer, c.Auth.OIDC.Audiences = "https://idp.example", []string{"modgate-cli"}
			c.Console.ClientID, c.Console.RedirectURL = "modgate-console", "http://modgate.example/ui/callback"
		}, wantErr: "console.redirect_url must be an https URL"},
		{name: "fail/redirect-elsewhere", mutate: func(c *Config) {
			c.Auth.OIDC.Issuer, c.Auth.OIDC.Audiences = "https://idp.example", []string{"modgate-cli"}
			c.Console.ClientID, c.Console.RedirectURL = "modgate-console", "https://modgate.example/callback"
		}, wantErr: "console.redirect_url must end in /ui/callback"},
		{name: "fail/no-session-ttl", mutate: func(c *Config) { c.Console.SessionTTL = 0 }, wantErr: "console.session_ttl must be a positive duration"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			c := Defaults()
			tt.mutate(&c)
			err := c.Validate()
			if tt.wantErr == "" && err != nil || tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)) {
				t.Errorf("Validate() = %v, want %q", err, tt.wantErr)
			}
		})
	}
}
