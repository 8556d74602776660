package server_test

import (
	"net/http"
	"testing"
)

// Every endpoint — protocol objects, refusals, health, metrics — carries the
// secure headers.
func TestSecureHeaders(t *testing.T) {
	t.Parallel()
	ts, _ := newTestServer(t, "off")
	for _, path := range []string{"/healthz", "/metrics", "/mod.test/x/@v/list", "/%2e%2e/@v/list", "/api/v1/audit/events"} {
		resp, err := http.Get(ts.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for k, want := range map[string]string{"X-Content-Type-Options": "nosniff", "X-Frame-Options": "DENY", "Referrer-Policy": "no-referrer"} {
			if got := resp.Header.Get(k); got != want {
				t.Errorf("GET %s (%d): %s = %q, want %q", path, resp.StatusCode, k, got, want)
			}
		}
	}
}
