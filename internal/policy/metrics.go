package policy

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the engine's Prometheus collectors. Label children are resolved
// once so a decision costs no label lookups.
type metrics struct {
	allowHit, allowMiss, denyHit, denyMiss, errors prometheus.Counter
	latency                                        prometheus.Observer
	reloadOK, reloadFailed                         prometheus.Counter
	revision                                       *prometheus.GaugeVec
	lastReloadFailed                               prometheus.Gauge
	lastReloadSuccess                              prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	decisions := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_policy_decisions_total",
		Help: "Policy decisions by result (allow, deny, error) and whether the decision cache answered (hit, miss).",
	}, []string{"result", "cache"})
	latency := prometheus.NewHistogram(prometheus.HistogramOpts{
		Name:    "modgate_policy_decision_duration_seconds",
		Help:    "Time to reach a policy decision, cache lookups included.",
		Buckets: []float64{1e-6, 5e-6, 10e-6, 25e-6, 50e-6, 100e-6, 250e-6, 500e-6, 1e-3, 5e-3, 25e-3},
	})
	reloads := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "modgate_policy_reloads_total",
		Help: "Policy loads by result (success, failure); a failed reload keeps the last good policy.",
	}, []string{"result"})
	revision := prometheus.NewGaugeVec(prometheus.GaugeOpts{
		Name: "modgate_policy_revision_info",
		Help: "The revision (hash of the policy files) being enforced; always 1.",
	}, []string{"revision"})
	lastFailed := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modgate_policy_last_reload_error",
		Help: "1 if the last attempt to load the policy directory failed (the previous policy is still enforced), else 0.",
	})
	lastSuccess := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modgate_policy_last_reload_success_timestamp_seconds",
		Help: "When the enforced policy was loaded, as a Unix time.",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{decisions, latency, reloads, revision, lastFailed, lastSuccess} {
			if err := reg.Register(c); err != nil {
				var are prometheus.AlreadyRegisteredError
				if errors.As(err, &are) {
					return nil, fmt.Errorf("policy: metrics already registered (one engine per registry): %w", err)
				}
				return nil, fmt.Errorf("policy: registering metrics: %w", err)
			}
		}
	}
	return &metrics{
		allowHit:          decisions.WithLabelValues("allow", "hit"),
		allowMiss:         decisions.WithLabelValues("allow", "miss"),
		denyHit:           decisions.WithLabelValues("deny", "hit"),
		denyMiss:          decisions.WithLabelValues("deny", "miss"),
		errors:            decisions.WithLabelValues("error", "miss"),
		latency:           latency,
		reloadOK:          reloads.WithLabelValues("success"),
		reloadFailed:      reloads.WithLabelValues("failure"),
		revision:          revision,
		lastReloadFailed:  lastFailed,
		lastReloadSuccess: lastSuccess,
	}, nil
}

func (m *metrics) decision(allow, hit bool, seconds float64) {
	switch {
	case allow && hit:
		m.allowHit.Inc()
	case allow:
		m.allowMiss.Inc()
	case hit:
		m.denyHit.Inc()
	default:
		m.denyMiss.Inc()
	}
	m.latency.Observe(seconds)
}
