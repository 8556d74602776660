package console

import (
	"net/http"
	"slices"
	"strings"

	dto "github.com/prometheus/client_model/go"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/policy"
)

// upstreamHealth is one mirror's fetch results since this replica started.
type upstreamHealth struct {
	Upstream                       string
	OK, NotFound, Errors, Timeouts float64
	ErrorShare                     float64 // (errors+timeouts) / all
}

type healthData struct {
	CacheLookups map[string]float64
	CacheTotal   float64
	HitRatio     float64
	Upstreams    []upstreamHealth
	Audit        bool // the audit writer's metrics are there
	QueueDepth   float64
	SpoolBytes   float64
	AuditHealthy bool
	// Database is set when the replica watches PostgreSQL
	// (modgate_database_up); DatabaseUp is its last answer.
	Database   bool
	DatabaseUp bool
	Failures   map[string]float64
	Policy     *policy.Status
	Errors     []audit.Row
	ErrorsErr  string
}

// handleHealth reads this replica's Prometheus registry — the numbers /metrics
// exports — and the audit trail's recent failures.
func (c *Console) handleHealth(w http.ResponseWriter, r *http.Request) {
	d := healthData{CacheLookups: map[string]float64{}, Failures: map[string]float64{}}
	if c.opts.Gatherer != nil {
		mfs, err := c.opts.Gatherer.Gather()
		if err != nil {
			c.log.Warn("console: gathering metrics", "err", err)
		}
		ups := map[string]*upstreamHealth{}
		for _, mf := range mfs {
			switch mf.GetName() {
			case "modgate_cache_lookups_total":
				for _, m := range mf.GetMetric() {
					d.CacheLookups[label(m, "result")] = m.GetCounter().GetValue()
				}
			case "modgate_upstream_fetches_total":
				for _, m := range mf.GetMetric() {
					name := label(m, "upstream")
					u := ups[name]
					if u == nil {
						u = &upstreamHealth{Upstream: name}
						ups[name] = u
					}
					v := m.GetCounter().GetValue()
					switch label(m, "result") {
					case "ok":
						u.OK += v
					case "not_found":
						u.NotFound += v
					case "timeout":
						u.Timeouts += v
					default:
						u.Errors += v
					}
				}
			case "modgate_audit_queue_depth":
				d.Audit, d.QueueDepth = true, gauge(mf)
			case "modgate_audit_spool_bytes":
				d.SpoolBytes = gauge(mf)
			case "modgate_database_up":
				d.Database, d.DatabaseUp = true, gauge(mf) == 1
			case "modgate_audit_healthy":
				d.AuditHealthy = gauge(mf) == 1
			case "modgate_audit_failures_total":
				for _, m := range mf.GetMetric() {
					d.Failures[label(m, "stage")] = m.GetCounter().GetValue()
				}
			}
		}
		for _, u := range ups {
			if all := u.OK + u.NotFound + u.Errors + u.Timeouts; all > 0 {
				u.ErrorShare = (u.Errors + u.Timeouts) / all
			}
			d.Upstreams = append(d.Upstreams, *u)
		}
		slices.SortFunc(d.Upstreams, func(a, b upstreamHealth) int { return strings.Compare(a.Upstream, b.Upstream) })
	}
	for _, v := range d.CacheLookups {
		d.CacheTotal += v
	}
	if d.CacheTotal > 0 {
		d.HitRatio = d.CacheLookups["hit"] / d.CacheTotal
	}
	if c.opts.PolicyStatus != nil {
		st := c.opts.PolicyStatus()
		d.Policy = &st
	}
	if c.opts.DB != nil {
		// Failed requests (upstream, storage or verification errors) are the
		// audit trail's "error" outcome.
		f := audit.Filter{Outcomes: []audit.Outcome{audit.OutcomeError}, Limit: 20}
		rows, _, err := audit.Query(r.Context(), c.opts.DB, f)
		if err != nil {
			c.log.Error("console: health", "err", err)
			d.ErrorsErr = publicMessage(err)
		}
		d.Errors = rows
	} else {
		d.ErrorsErr = errNoAudit.Error()
	}
	c.render(w, r, http.StatusOK, "health", "Health", d)
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.GetLabel() {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func gauge(mf *dto.MetricFamily) float64 {
	var sum float64
	for _, m := range mf.GetMetric() {
		sum += m.GetGauge().GetValue()
	}
	return sum
}
