package audit

import "github.com/prometheus/client_golang/prometheus"

// metrics are the writer's Prometheus collectors, registered on the registerer given
// to NewWriter (none when it is nil) and unregistered by Close.
type metrics struct {
	reg          prometheus.Registerer
	collectors   []prometheus.Collector
	recorded     prometheus.Counter
	written      prometheus.Counter
	failures     *prometheus.CounterVec
	writeLatency prometheus.Histogram
	spoolSync    prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer, w *Writer) *metrics {
	m := &metrics{
		reg: reg,
		recorded: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modgate_audit_events_recorded_total",
			Help: "Audit events acknowledged to callers (durable in the spool or PostgreSQL).",
		}),
		written: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "modgate_audit_events_written_total",
			Help: "Audit rows inserted into PostgreSQL (replayed duplicates not counted).",
		}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_audit_failures_total",
			Help: "Audit failures by stage: spool (disk write), postgres (insert), record (event refused to a caller), rejected (row PostgreSQL refused, kept in rejected.jsonl).",
		}, []string{"stage"}),
		writeLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modgate_audit_write_duration_seconds",
			Help:    "Time to insert one batch of audit rows into PostgreSQL.",
			Buckets: prometheus.ExponentialBuckets(0.001, 2, 14),
		}),
		spoolSync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "modgate_audit_spool_commit_duration_seconds",
			Help:    "Time to append and fsync one group commit to the audit spool.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 14),
		}),
	}
	for _, stage := range []string{"spool", "postgres", "record", "rejected"} {
		m.failures.WithLabelValues(stage)
	}
	m.collectors = []prometheus.Collector{
		m.recorded, m.written, m.failures, m.writeLatency, m.spoolSync,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "modgate_audit_queue_depth",
			Help: "Audit events acknowledged but not yet in PostgreSQL.",
		}, func() float64 { return float64(w.unshipped.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "modgate_audit_spool_bytes",
			Help: "Bytes in the audit spool directory.",
		}, func() float64 { return float64(w.spoolBytes.Load()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "modgate_audit_last_ship_timestamp_seconds",
			Help: "When audit rows last reached PostgreSQL (the writer's start before the first), as a Unix time; with modgate_audit_queue_depth > 0, now minus this is the audit lag.",
		}, func() float64 { return float64(w.lastShip.Load()) / 1e9 }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "modgate_audit_healthy",
			Help: "1 when an audit event recorded now would be stored.",
		}, func() float64 {
			if w.Healthy() == nil {
				return 1
			}
			return 0
		}),
	}
	if reg != nil {
		for _, c := range m.collectors {
			reg.MustRegister(c)
		}
	}
	return m
}

func (m *metrics) unregister() {
	if m.reg == nil {
		return
	}
	for _, c := range m.collectors {
		m.reg.Unregister(c)
	}
}
