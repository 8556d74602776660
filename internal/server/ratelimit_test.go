package server

import (
	"testing"
	"time"

	"github.com/modgate/modgate/internal/config"
)

func TestRateLimiterPerIdentity(t *testing.T) {
	t.Parallel()
	rl := newRateLimiter(config.RateLimit{RequestsPerSecond: 10, Burst: 3})
	now := time.Unix(1700000000, 0)
	for i := range 3 {
		if ok, _ := rl.allow("token:a", now); !ok {
			t.Fatalf("request %d within the burst refused", i+1)
		}
	}
	ok, wait := rl.allow("token:a", now)
	if ok || wait <= 0 || wait > 100*time.Millisecond {
		t.Fatalf("4th request: ok=%v wait=%v, want refused with wait in (0, 100ms]", ok, wait)
	}
	if ok, _ := rl.allow("token:b", now); !ok {
		t.Error("another identity was refused because of the first one's burst")
	}
	if ok, _ := rl.allow("token:a", now.Add(100*time.Millisecond)); !ok {
		t.Error("refill after 1/rate not honoured")
	}
	// Idle buckets are dropped, so the map does not grow with every identity ever seen.
	rl.allow("token:c", now.Add(time.Hour))
	if n := len(rl.buckets); n != 1 {
		t.Errorf("%d buckets after an hour idle, want 1", n)
	}
	if newRateLimiter(config.RateLimit{}) != nil {
		t.Error("requests_per_second 0 should disable the limiter")
	}
}
