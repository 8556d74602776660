package server_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/server"
)

// A degraded check keeps /readyz 200 and says what is degraded; a failing one
// makes it 503.
func TestReadyzDegraded(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name       string
		check      error
		wantStatus int
		wantLine   string
	}{
		{"ok/up", nil, http.StatusOK, "database: ok\n"},
		{"ok/degraded", server.Degraded("PostgreSQL unreachable for 3s"), http.StatusOK, "database: degraded (PostgreSQL unreachable for 3s)\n"},
		{"fail/down", errors.New("spool unavailable"), http.StatusServiceUnavailable, "database: spool unavailable\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := config.Defaults()
			cfg.Cache.Dir = t.TempDir()
			cfg.Auth.Anonymous = true
			s, err := app.NewServer(app.ServerOptions{Config: cfg})
			if err != nil {
				t.Fatal(err)
			}
			s.AddReadyCheck("database", func(context.Context) (string, error) { return "", tt.check })
			ts := httptest.NewServer(s.Handler())
			defer ts.Close()
			resp, body := get(t, "GET", ts.URL+"/readyz")
			if resp.StatusCode != tt.wantStatus || !strings.Contains(body, tt.wantLine) || !strings.Contains(body, "storage: ok") {
				t.Errorf("readyz: %d %q, want %d with %q", resp.StatusCode, body, tt.wantStatus, tt.wantLine)
			}
		})
	}
}
