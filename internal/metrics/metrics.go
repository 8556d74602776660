// Package metrics defines the Prometheus collectors of the proxy core. Each
// component receives the *Metrics it reports to; nothing registers globally, so
// tests can run many servers in one process.
package metrics

import "github.com/prometheus/client_golang/prometheus"

// Metrics holds the proxy core's collectors.
type Metrics struct {
	Requests        *prometheus.CounterVec   // endpoint, code
	RequestDuration *prometheus.HistogramVec // endpoint
	BytesServed     *prometheus.CounterVec   // endpoint
	Cache           *prometheus.CounterVec   // result: hit, miss, stale, negative, peer
	UpstreamFetches *prometheus.CounterVec   // upstream, result
	UpstreamLatency *prometheus.HistogramVec // upstream (time to response headers)
	InflightFetches prometheus.Gauge
	AuditFailures   prometheus.Counter
	// IntegrityFailures counts upstream objects refused because they do not match
	// the checksum database (or the database misbehaved).
	IntegrityFailures prometheus.Counter
	// RateLimited counts requests refused by the per-identity rate limit, by
	// authentication method.
	RateLimited *prometheus.CounterVec
	// AuthFailures counts refused credentials by kind (oidc, api-token, mtls, or
	// empty when malformed) and reason (auth.FailureReason).
	AuthFailures *prometheus.CounterVec
	// ZipPrefetches counts public zips fetched ahead of their request, by
	// result (fetched, cached, failed, dropped).
	ZipPrefetches *prometheus.CounterVec
}

// New creates the collectors and registers them on reg.
func New(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_http_requests_total",
			Help: "HTTP requests served, by endpoint and status code.",
		}, []string{"endpoint", "code"}),
		RequestDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modgate_http_request_duration_seconds",
			Help:    "Time to serve a request, by endpoint.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		BytesServed: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_http_response_bytes_total",
			Help: "Response body bytes written, by endpoint.",
		}, []string{"endpoint"}),
		Cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_cache_lookups_total",
			Help: "Cache lookups by result: hit, miss (fetched), stale (served after upstream failure), negative (cached not-found), peer (filled by another replica while this one waited for the fill lock).",
		}, []string{"result"}),
		UpstreamFetches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_upstream_fetches_total",
			Help: "Upstream requests by upstream and result (ok, not_found, error, timeout).",
		}, []string{"upstream", "result"}),
		UpstreamLatency: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "modgate_upstream_latency_seconds",
			Help:    "Time from upstream request to response headers.",
			Buckets: prometheus.DefBuckets,
		}, []string{"upstream"}),
		InflightFetches: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "modgate_upstream_inflight_fetches",
			Help: "Objects being fetched from upstreams right now.",
		}),
		AuditFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modgate_audit_record_failures_total",
			Help: "Requests served whose audit event could not be recorded.",
		}),
		IntegrityFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modgate_integrity_failures_total",
			Help: "Upstream .mod/.zip objects refused because their hash does not match the checksum database, or the database's log is inconsistent.",
		}),
	}
	m.RateLimited = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_rate_limited_total",
		Help: "Requests refused with 429 by the per-identity rate limit, by authentication method.",
	}, []string{"method"})
	m.AuthFailures = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_auth_failures_total",
		Help: "Refused credentials (API tokens, OIDC tokens, client certificates), by kind and reason.",
	}, []string{"kind", "reason"})
	m.ZipPrefetches = prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_zip_prefetches_total",
		Help: "Public module zips fetched into the cache when their .info was first asked for, by result: fetched, cached (already stored), failed, dropped (queue full).",
	}, []string{"result"})
	reg.MustRegister(m.IntegrityFailures, m.RateLimited, m.AuthFailures, m.ZipPrefetches)
	reg.MustRegister(m.Requests, m.RequestDuration, m.BytesServed, m.Cache,
		m.UpstreamFetches, m.UpstreamLatency, m.InflightFetches, m.AuditFailures)
	return m
}

// Discard returns collectors registered nowhere, for tests and tools.
func Discard() *Metrics { return New(prometheus.NewRegistry()) }
