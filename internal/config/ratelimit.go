package config

import "fmt"

// RateLimit is a token bucket per identity.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate; 0 disables the limit.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many requests an idle identity may make at once.
	Burst int `yaml:"burst"`
	// Unauthenticated limits, per source address (IPv6 by /64), the requests
	// that arrive without valid credentials, before any audit work.
	Unauthenticated UnauthenticatedLimit `yaml:"unauthenticated"`
}

// UnauthenticatedLimit is a token bucket per source spent only by requests
// refused for lack of valid credentials. Within the burst each refusal is
// audited as usual; beyond it the refusals answer 429 and are counted into one
// summary audit row per source per SummaryInterval.
type UnauthenticatedLimit struct {
	// RequestsPerSecond is the sustained rate; 0 disables the limit.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	Burst             int     `yaml:"burst"`
	// SummaryInterval is the window one summary row covers.
	SummaryInterval Duration `yaml:"summary_interval"`
}

// Enabled reports whether unauthenticated requests are limited.
func (u UnauthenticatedLimit) Enabled() bool { return u.RequestsPerSecond > 0 }

// Enabled reports whether requests are limited.
func (r RateLimit) Enabled() bool { return r.RequestsPerSecond > 0 }

func (r RateLimit) validate() []string {
	if r.RequestsPerSecond < 0 || r.Burst < 0 {
		return []string{"server.rate_limit: requests_per_second and burst must not be negative"}
	}
	if r.RequestsPerSecond > 0 && r.Burst < 1 {
		return []string{fmt.Sprintf("server.rate_limit: burst must be at least 1 when requests_per_second is %g", r.RequestsPerSecond)}
	}
	if u := r.Unauthenticated; u.RequestsPerSecond < 0 || u.Burst < 0 || u.SummaryInterval < 0 {
		return []string{"server.rate_limit.unauthenticated: requests_per_second, burst and summary_interval must not be negative"}
	} else if u.RequestsPerSecond > 0 && (u.Burst < 1 || u.SummaryInterval <= 0) {
		return []string{"server.rate_limit.unauthenticated: burst must be at least 1 and summary_interval positive when requests_per_second is set"}
	}
	return nil
}
