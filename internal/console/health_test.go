package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// The health page shows whether PostgreSQL answers, from the modgate_database_up
// gauge /metrics exports, and what a degraded replica cannot do.
func TestHealthShowsDatabase(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		gauge    *float64 // nil: no database watched
		want     string
		wantNot  string
		wantMore string
	}{
		{"ok/up", ptr(1.0), `<span class="outcome served">reachable</span>`, "unreachable", ""},
		{"ok/down", ptr(0.0), "unreachable: degraded", "", "publish, delete, token administration and audit queries are refused (503)"},
		{"ok/no-database", nil, "No database configured.", "unreachable", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			reg := prometheus.NewRegistry()
			if tt.gauge != nil {
				g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "modgate_database_up", Help: "test"})
				g.Set(*tt.gauge)
				reg.MustRegister(g)
			}
			c := newConsole(t, time.Now())
			c.opts.Gatherer = reg
			r := httptest.NewRequest("GET", "https://modgate.test/ui/health", nil)
			r.Header.Set("X-Test-Cert", "carl/security-audit")
			w := serve(c, r)
			if w.Code != http.StatusOK {
				t.Fatalf("status %d\n%s", w.Code, w.Body)
			}
			body := w.Body.String()
			if !strings.Contains(body, tt.want) || (tt.wantMore != "" && !strings.Contains(body, tt.wantMore)) {
				t.Errorf("health page lacks %q / %q:\n%s", tt.want, tt.wantMore, body)
			}
			if tt.wantNot != "" && strings.Contains(body, tt.wantNot) {
				t.Errorf("health page says %q:\n%s", tt.wantNot, body)
			}
		})
	}
}

func ptr[T any](v T) *T { return &v }
