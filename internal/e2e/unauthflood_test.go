package e2e

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// A flood of requests without credentials is refused beyond its source's burst
// and costs a bounded number of audit rows, whose summary counts add up exactly
// to the refused requests, while a client with an API token is served in full.
func TestUnauthenticatedFloodIsSummarised(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	pool, dbURL := pgtest.NewPool(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	const burst = 20
	cfg.Server.RateLimit.Unauthenticated = config.UnauthenticatedLimit{
		RequestsPerSecond: 1, Burst: burst, SummaryInterval: config.Duration(time.Second),
	}
	url := startApp(t, cfg)

	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := store.Create(context.Background(), tokens.CreateRequest{Subject: "ci-build", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	client := clientTrusting(t, p.CAFile)
	path := url + "/" + proxytest.HelloPath + "/@v/v1.0.0.info"

	const n = 5000
	var unauthorized, refused, other atomic.Int64
	var authOK, authSent atomic.Int64
	start := time.Now()
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range 16 {
		wg.Go(func() {
			for range work {
				resp, err := client.Get(path)
				if err != nil {
					other.Add(1)
					continue
				}
				resp.Body.Close()
				switch resp.StatusCode {
				case http.StatusUnauthorized:
					unauthorized.Add(1)
				case http.StatusTooManyRequests:
					if resp.Header.Get("Retry-After") == "" {
						t.Error("429 without Retry-After")
					}
					refused.Add(1)
				default:
					other.Add(1)
				}
			}
		})
	}
	// Meanwhile an authenticated client is served every time.
	done := make(chan struct{})
	var authWG sync.WaitGroup
	authWG.Go(func() {
		for {
			select {
			case <-done:
				return
			default:
			}
			req, _ := http.NewRequest("GET", path, nil)
			req.SetBasicAuth("modgate", secret)
			authSent.Add(1)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode == http.StatusOK {
					authOK.Add(1)
				}
			}
		}
	})
	wg.Wait()
	close(done)
	authWG.Wait()
	elapsed := time.Since(start)

	if other.Load() != 0 {
		t.Fatalf("%d unauthenticated requests neither 401 nor 429", other.Load())
	}
	if authSent.Load() == 0 || authOK.Load() != authSent.Load() {
		t.Fatalf("authenticated client: %d of %d requests served", authOK.Load(), authSent.Load())
	}
	// Within the burst (plus what refilled at 1/s) each refusal is a 401 as before.
	if max401 := int64(burst) + int64(elapsed/time.Second) + 2; unauthorized.Load() < burst || unauthorized.Load() > max401 {
		t.Fatalf("401s = %d, want between %d and %d", unauthorized.Load(), burst, max401)
	}
	if refused.Load() != n-unauthorized.Load() {
		t.Fatalf("429s = %d, want %d", refused.Load(), n-unauthorized.Load())
	}

	// The 401s are recorded one by one; the 429s only in summary rows, one per
	// source per second here, whose counts add up exactly.
	deadline := time.Now().Add(20 * time.Second)
	var summed int64
	for {
		if err := pool.QueryRow(context.Background(),
			"SELECT coalesce(sum(bytes), 0) FROM audit_events WHERE outcome = 'rate_limited_summary'").Scan(&summed); err != nil {
			t.Fatal(err)
		}
		if summed >= refused.Load() || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if summed != refused.Load() {
		t.Fatalf("summary rows count %d refused requests, want %d", summed, refused.Load())
	}
	summaries := countRows(t, pool, "outcome = 'rate_limited_summary'")
	if maxRows := int(elapsed/time.Second) + 2; summaries > maxRows {
		t.Errorf("%d summary rows for %v of flood from one source, want at most %d", summaries, elapsed, maxRows)
	}
	if got := countRows(t, pool, "outcome = 'unauthenticated'"); int64(got) != unauthorized.Load() {
		t.Errorf("unauthenticated rows = %d, want %d (one per 401)", got, unauthorized.Load())
	}
	if got := countRows(t, pool, "outcome = 'rate_limited_summary' AND client_addr = '127.0.0.1' AND status = 429 AND reason LIKE '%sample path /"+proxytest.HelloPath+"/@v/v1.0.0.info'"); got != summaries {
		t.Errorf("%d of %d summary rows name the source, status and sample path", got, summaries)
	}
	if total := countRows(t, pool, "true"); int64(total) > unauthorized.Load()+int64(summaries)+authSent.Load()+5 {
		t.Errorf("%d audit rows for %d requests: the flood was recorded per request", total, n)
	}
	if !strings.HasPrefix(url, "https://") {
		t.Fatal("test expects TLS")
	}
}
