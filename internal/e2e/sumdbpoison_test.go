package e2e

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
)

// poisoningMirror sits in front of a genuine upstream and, while poison is set,
// answers checksum database lookups with a forged record (and tiles with garbage).
func poisoningMirror(t *testing.T, upstreamURL string, poison *atomic.Bool) *httptest.Server {
	t.Helper()
	u, _ := url.Parse(upstreamURL)
	rp := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if poison.Load() && strings.Contains(r.URL.Path, "/sumdb/") {
			switch {
			case strings.Contains(r.URL.Path, "/lookup/"):
				w.Write([]byte("7\nmod.test/hello v1.1.0 h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\nmod.test/hello v1.1.0/go.mod h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=\n\ngarbage tree head\n"))
				return
			case strings.Contains(r.URL.Path, "/tile/"):
				w.Write(make([]byte, 32*256))
				return
			}
		}
		rp.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv
}

// A forged checksum database answer from a mirror is refused with a 502 and not
// cached; once the mirror is repaired the very next request is served (200); and
// with a second mirror in the list, the forged answer moves on to it.
func TestSumDBPoisonedLookupNotCached(t *testing.T) {
	t.Parallel()
	genuine := helloModules(t)
	up := proxytest.NewServer(t, genuine...)
	db := sumdbtest.Mount(t, up, testSumDB)
	var poison atomic.Bool
	poison.Store(true)
	bad := poisoningMirror(t, up.URL, &poison)

	lookup := "/sumdb/" + testSumDB + "/lookup/" + proxytest.HelloPath + "@v1.1.0"
	mod := proxytest.ModPath(proxytest.HelloPath, "v1.1.0")

	t.Run("fail/poisoned-then-repaired", func(t *testing.T) {
		mg := startVerifyingProxy(t, bad.URL, db.Key(), t.TempDir())
		if code, body := get(t, mg.URL+lookup); code != http.StatusBadGateway || !strings.Contains(body, "does not verify") {
			t.Errorf("poisoned lookup: %d %q, want 502 naming the failed verification", code, body)
		}
		if code, body := get(t, mg.URL+mod); code != http.StatusBadGateway {
			t.Errorf("poisoned .mod: %d %q, want 502", code, body)
		}
		for _, tile := range []string{"/sumdb/" + testSumDB + "/tile/8/0/000"} {
			if code, _ := get(t, mg.URL+tile); code == http.StatusOK {
				t.Errorf("garbage tile %s served with 200", tile)
			}
		}
		poison.Store(false) // the mirror is repaired
		code, body := get(t, mg.URL+lookup)
		if code != http.StatusOK || !strings.Contains(body, proxytest.HelloPath+" v1.1.0 h1:") || strings.Contains(body, "AAAAAAAA") {
			t.Errorf("after repair: lookup %d %q, want the genuine record", code, body)
		}
		if code, body := get(t, mg.URL+mod); code != http.StatusOK {
			t.Errorf("after repair: .mod %d %q, want 200", code, body)
		}
		poison.Store(true)
	})

	t.Run("ok/next-mirror", func(t *testing.T) {
		// Both mirrors separated by ",": a forged answer is not a 404, yet the
		// next mirror is asked.
		mg := startVerifyingProxy(t, bad.URL+","+up.URL, db.Key(), t.TempDir())
		code, body := get(t, mg.URL+lookup)
		if code != http.StatusOK || strings.Contains(body, "AAAAAAAA") {
			t.Errorf("lookup with a good second mirror: %d %q, want the genuine record", code, body)
		}
		if code, body := get(t, mg.URL+mod); code != http.StatusOK {
			t.Errorf(".mod with a good second mirror: %d %q", code, body)
		}
	})
}
