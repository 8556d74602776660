package app_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/app"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// BenchmarkWarmModHit measures the warm small-request path through the whole
// handler as `modgate serve` builds it (internal/app): an API token
// authenticates, the repository's policy decides (a decision-cache hit after
// the first request), the audit trail records (spool + PostgreSQL), the access
// log is written (JSON, discarded) and metrics counted, and the cache answers a
// 194-byte-class .mod. TLS and the network are left out (httptest), so ns/op
// and allocs/op are modgate's own per-request cost; docs/benchmarks.md.
func BenchmarkWarmModHit(b *testing.B) {
	upstream := proxytest.NewServer(b, proxytest.StandardModules()...)
	pool, dbURL := pgtest.NewPool(b)
	cfg := config.Defaults()
	cfg.Listen = "127.0.0.1:0"
	cfg.Upstream.Proxies = upstream.URL
	cfg.Cache.Dir = b.TempDir()
	cfg.Database.URL = dbURL
	cfg.Policy.Dir = "../../policy"
	cfg.SumDB.Verify = false // the fixtures are in no checksum database
	cfg.Server.RateLimit.RequestsPerSecond = 0
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	a, err := app.New(ctx, cfg, slog.New(slog.NewJSONHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelInfo})))
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close()
	h := a.Server().HTTPServer("127.0.0.1:0").Handler

	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		b.Fatal(err)
	}
	secret, _, err := store.Create(ctx, tokens.CreateRequest{Subject: "bench@corp.example", Scopes: []string{"pull"}, TTL: time.Hour})
	if err != nil {
		b.Fatal(err)
	}
	path := "/" + proxytest.HelloPath + "/@v/v1.0.0.mod"
	do := func() *httptest.ResponseRecorder {
		req := httptest.NewRequest(http.MethodGet, path, nil)
		req.RemoteAddr = "127.0.0.1:40000"
		req.Header.Set("Authorization", "Bearer "+secret)
		w := httptest.NewRecorder()
		h.ServeHTTP(deadlineRecorder{w}, req)
		return w
	}
	for range 2 { // fill the cache, then the token and decision caches
		if w := do(); w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
	}
	before := len(upstream.Requests())
	b.ReportAllocs()
	for b.Loop() {
		if w := do(); w.Code != http.StatusOK {
			b.Fatalf("GET %s: %d %s", path, w.Code, w.Body)
		}
	}
	b.StopTimer()
	if n := len(upstream.Requests()) - before; n != 0 {
		b.Fatalf("%d requests reached the upstream on the warm path", n)
	}
}

// deadlineRecorder is an httptest.ResponseRecorder that accepts write deadlines,
// as net/http's own ResponseWriters do, so the benchmark takes the production
// path: on a plain recorder every SetWriteDeadline fails, and building its
// ErrNotSupported error cost 6 allocations per request that no server pays.
type deadlineRecorder struct{ *httptest.ResponseRecorder }

func (deadlineRecorder) SetWriteDeadline(time.Time) error { return nil }
