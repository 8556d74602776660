package server

import (
	"fmt"
	"math"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/identity"
)

// unauthLimiter bounds, per source address, the requests refused for lack of
// valid credentials (none presented, or presented and invalid; the
// authenticator's failure limiter additionally slows the expensive checks of
// invalid ones). Within its burst a refusal is audited as usual; beyond it the
// request gets 429 and is only counted into one summary audit row per source
// per interval, so a flood costs one fsync'd row a minute instead of one per
// request, and nothing is silently lost. Authenticated callers never spend it.
type unauthLimiter struct {
	buckets  *rateLimiter
	interval time.Duration

	mu        sync.Mutex
	summaries map[string]*refusalSummary
}

// refusalSummary counts one source's refusals beyond the burst in one window.
type refusalSummary struct {
	source      string
	count       int64
	first, last time.Time
	samplePath  string
	userAgent   string
}

func newUnauthLimiter(cfg config.UnauthenticatedLimit) *unauthLimiter {
	if !cfg.Enabled() {
		return nil
	}
	return &unauthLimiter{
		buckets:   newRateLimiter(config.RateLimit{RequestsPerSecond: cfg.RequestsPerSecond, Burst: cfg.Burst}),
		interval:  time.Duration(cfg.SummaryInterval),
		summaries: make(map[string]*refusalSummary),
	}
}

// sourceKey groups a client address: IPv4 by address, IPv6 by its /64 (one
// host usually holds a whole /64).
func sourceKey(addr string) string {
	ip := net.ParseIP(addr)
	if ip == nil {
		return addr
	}
	if ip.To4() != nil {
		return ip.String()
	}
	return (&net.IPNet{IP: ip.Mask(net.CIDRMask(64, 128)), Mask: net.CIDRMask(64, 128)}).String()
}

// refuseUnauthenticated spends a token of the request's source; when the source
// is beyond its burst it answers 429, counts the request into the source's
// summary and reports true (the request is then not audited on its own).
func (s *Server) refuseUnauthenticated(w http.ResponseWriter, r *http.Request) bool {
	ul := s.unauth
	if ul == nil {
		return false
	}
	src := sourceKey(clientIP(r))
	now := time.Now()
	ok, wait := ul.buckets.allow(src, now)
	if ok {
		return false
	}
	ul.count(s, src, r, now)
	s.m.RateLimited.WithLabelValues(string(identity.MethodAnonymous)).Inc()
	if rec := recorderOf(w); rec != nil {
		rec.rateLimited = true
	}
	secs := max(int(math.Ceil(wait.Seconds())), 1)
	w.Header().Set("Retry-After", strconv.Itoa(secs))
	s.writeError(w, r, derrors.New(derrors.RateLimited,
		"too many requests without valid credentials from %s; retry after %ds", src, secs))
	return true
}

// count adds one refusal to src's summary, starting a window (and its flush)
// when there is none.
func (ul *unauthLimiter) count(s *Server, src string, r *http.Request, now time.Time) {
	ul.mu.Lock()
	defer ul.mu.Unlock()
	sum := ul.summaries[src]
	if sum == nil {
		sum = &refusalSummary{source: src, first: now, samplePath: r.URL.EscapedPath(), userAgent: r.UserAgent()}
		ul.summaries[src] = sum
		time.AfterFunc(ul.interval, func() { ul.flush(s, src, sum) })
	}
	sum.count++
	sum.last = now
}

// flush writes sum's row when its window is over, unless a shutdown flush took
// it already; refusals after this start a new window.
func (ul *unauthLimiter) flush(s *Server, src string, sum *refusalSummary) {
	ul.mu.Lock()
	if ul.summaries[src] != sum {
		ul.mu.Unlock()
		return
	}
	delete(ul.summaries, src)
	ul.mu.Unlock()
	s.recordSummary(sum)
}

// recordSummary writes one summary row. The summary is out of the map, so no
// refusal is counted into it any more.
func (s *Server) recordSummary(sum *refusalSummary) {
	if s.audit == nil {
		return
	}
	ev := sum.event(s.set.Replica)
	if err := s.audit.Record(ev); err != nil {
		s.m.AuditFailures.Inc()
		s.log.Error("audit: rate-limit summary not recorded", "source", sum.source, "count", sum.count, "err", err)
	}
}

// FlushRefusalSummaries writes every open summary now: at shutdown, after the
// listener drained and before the audit trail closes, so no count is lost.
func (s *Server) FlushRefusalSummaries() {
	ul := s.unauth
	if ul == nil {
		return
	}
	ul.mu.Lock()
	var open []*refusalSummary
	for src, sum := range ul.summaries {
		open = append(open, sum)
		delete(ul.summaries, src)
	}
	ul.mu.Unlock()
	for _, sum := range open {
		s.recordSummary(sum)
	}
}

// event is the summary row: outcome rate_limited_summary, status 429, the
// count in Bytes and in the reason, Time the last refusal.
func (sum *refusalSummary) event(replica string) audit.Event {
	ev := audit.Event{
		Time:       sum.last,
		ClientAddr: sum.source,
		Action:     audit.ActionAdmin,
		Outcome:    audit.OutcomeRateLimitedSummary,
		Status:     http.StatusTooManyRequests,
		Bytes:      sum.count,
		UserAgent:  sum.userAgent,
		Replica:    replica,
		Reason: fmt.Sprintf("%d requests without valid credentials refused from %s between %s and %s; sample path %s",
			sum.count, sum.source, sum.first.UTC().Format(time.RFC3339Nano), sum.last.UTC().Format(time.RFC3339Nano), sum.samplePath),
	}
	ev.SetDuration(sum.last.Sub(sum.first))
	ev.SetIdentity(anonymous)
	return ev
}
