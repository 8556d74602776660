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
		{name: "fail/unknown-key", yaml: "cache:\n  ttl: 5m\n", wantErr: "field ttl not found"},
		{name: "fail/bad-duration", yaml: "cache:\n  list_ttl: five\n", wantErr: "invalid duration"},
		{name: "fail/bad-level", yaml: "log:\n  level: loud\n", wantErr: "log.level"},
		{name: "fail/retries", yaml: "upstream:\n  retries: 99\n", wantErr: "upstream.retries"},
		{name: "fail/sumdb-name", yaml: "sumdb:\n  names: [\"a/b\"]\n", wantErr: "sumdb.names"},
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
		{name: "fail/no-session-ttl", mutate: func(c *Config) { c.Console.SessionTTL = 0 }, wantErr: "console.session_ttl must be positive"},
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
