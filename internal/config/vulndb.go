package config

import (
	"fmt"
	"time"
)

// VulnDB serves the Go vulnerability database at /vulndb/, so that
// `govulncheck -db https://modgate.example/vulndb` works where the public
// database is unreachable, and gives the policy the advisories affecting each
// version (docs/vulnerabilities.md).
type VulnDB struct {
	Enabled bool `yaml:"enabled"`
	// Source is "module" (the golang.org/x/vulndb module, fetched through
	// modgate's own upstream chain and verified like any module) or "url" (an
	// upstream database serving the standard layout, reached with upstream's
	// mirror settings).
	Source string `yaml:"source"`
	// Module and Version name the module for source "module"; version "latest"
	// takes @latest at each refresh.
	Module  string `yaml:"module"`
	Version string `yaml:"version"`
	// Upstream is the database for source "url": its URL with the connection
	// settings of an upstream mirror (ca_file, client certificate, username and
	// password_file, timeouts). Outbound proxies come from HTTPS_PROXY/NO_PROXY.
	Upstream UpstreamMirror `yaml:"upstream"`
	// Refresh is how long a copy is used before the source is asked again.
	Refresh Duration `yaml:"refresh"`
	// StaleIfError is how long past refresh the last good copy is still served
	// while the source fails; 0 serves it as long as the source fails.
	StaleIfError Duration `yaml:"stale_if_error"`
}

func defaultVulnDB() VulnDB {
	return VulnDB{
		Source:       "module",
		Module:       "golang.org/x/vulndb",
		Version:      "latest",
		Refresh:      Duration(time.Hour),
		StaleIfError: Duration(7 * 24 * time.Hour),
	}
}

// Validate checks the vulndb section.
func (v *VulnDB) Validate() error {
	if !v.Enabled {
		return nil
	}
	switch v.Source {
	case "module":
		if v.Module == "" || v.Version == "" {
			return fmt.Errorf("vulndb: source module needs module and version")
		}
	case "url":
		if v.Upstream.URL == "" {
			return fmt.Errorf("vulndb: source url needs upstream.url")
		}
		if err := v.Upstream.Validate(); err != nil {
			return fmt.Errorf("vulndb.upstream: %w", err)
		}
	default:
		return fmt.Errorf("vulndb.source: %q is neither \"module\" nor \"url\"", v.Source)
	}
	if v.Refresh <= 0 {
		return fmt.Errorf("vulndb.refresh must be positive")
	}
	if v.StaleIfError < 0 {
		return fmt.Errorf("vulndb.stale_if_error must not be negative")
	}
	return nil
}
