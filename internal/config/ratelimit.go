package config

import "fmt"

// RateLimit is a token bucket per identity.
type RateLimit struct {
	// RequestsPerSecond is the sustained rate; 0 disables the limit.
	RequestsPerSecond float64 `yaml:"requests_per_second"`
	// Burst is how many requests an idle identity may make at once.
	Burst int `yaml:"burst"`
}

// Enabled reports whether requests are limited.
func (r RateLimit) Enabled() bool { return r.RequestsPerSecond > 0 }

func (r RateLimit) validate() []string {
	if r.RequestsPerSecond < 0 || r.Burst < 0 {
		return []string{"server.rate_limit: requests_per_second and burst must not be negative"}
	}
	if r.RequestsPerSecond > 0 && r.Burst < 1 {
		return []string{fmt.Sprintf("server.rate_limit: burst must be at least 1 when requests_per_second is %g", r.RequestsPerSecond)}
	}
	return nil
}
