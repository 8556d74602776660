package server

import (
	"math"
	"net/http"
	"strconv"
	"sync"
	"time"

	"golang.org/x/time/rate"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// rateLimiter is a token bucket per identity, so one runaway CI job (or a leaked
// token in a loop) cannot starve everyone else of the proxy. It is keyed by who
// is calling, not by address: many developers share a NAT address, and one
// identity may call from many machines.
type rateLimiter struct {
	limit rate.Limit
	burst int
	// idle is how long an unused bucket takes to refill completely; a bucket
	// idle that long is indistinguishable from a new one and can be dropped.
	idle time.Duration

	mu        sync.Mutex
	buckets   map[string]*bucket
	lastSweep time.Time
}

type bucket struct {
	l    *rate.Limiter
	seen time.Time
}

func newRateLimiter(cfg config.RateLimit) *rateLimiter {
	if !cfg.Enabled() {
		return nil
	}
	idle := time.Duration(float64(cfg.Burst)/cfg.RequestsPerSecond*float64(time.Second)) + time.Second
	return &rateLimiter{limit: rate.Limit(cfg.RequestsPerSecond), burst: cfg.Burst, idle: idle, buckets: make(map[string]*bucket)}
}

// allow takes a token from key's bucket, or says how long until one is there.
func (rl *rateLimiter) allow(key string, now time.Time) (bool, time.Duration) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	if now.Sub(rl.lastSweep) > rl.idle && len(rl.buckets) > 0 {
		for k, b := range rl.buckets {
			if now.Sub(b.seen) > rl.idle {
				delete(rl.buckets, k)
			}
		}
		rl.lastSweep = now
	}
	b := rl.buckets[key]
	if b == nil {
		b = &bucket{l: rate.NewLimiter(rl.limit, rl.burst)}
		rl.buckets[key] = b
	}
	b.seen = now
	r := b.l.ReserveN(now, 1)
	if !r.OK() {
		return false, time.Second
	}
	if d := r.DelayFrom(now); d > 0 {
		r.CancelAt(now)
		return false, d
	}
	return true, 0
}

// rateKey names the identity a bucket belongs to: the API token (each token is
// its own budget), else method and subject; anonymous callers by address.
func rateKey(id *identity.Identity, r *http.Request) string {
	switch {
	case id.TokenID != "":
		return "token:" + id.TokenID
	case id.Method == identity.MethodAnonymous:
		return "anonymous:" + clientIP(r)
	}
	return string(id.Method) + ":" + id.Subject
}

// rateLimited answers 429 with Retry-After and reports true when id has used
// its budget.
func (s *Server) rateLimited(w http.ResponseWriter, r *http.Request, id *identity.Identity) bool {
	if s.limiter == nil {
		return false
	}
	ok, wait := s.limiter.allow(rateKey(id, r), time.Now())
	if ok {
		return false
	}
	s.m.RateLimited.WithLabelValues(string(id.Method)).Inc()
	if rec := recorderOf(w); rec != nil {
		rec.rateLimited = true
	}
	secs := int(math.Ceil(wait.Seconds()))
	w.Header().Set("Retry-After", strconv.Itoa(max(secs, 1)))
	s.writeError(w, r, derrors.New(derrors.RateLimited,
		"too many requests: %s exceeds %g requests per second (burst %d); retry after %ds",
		id.Subject, float64(s.limiter.limit), s.limiter.burst, max(secs, 1)))
	return true
}
