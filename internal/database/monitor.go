package database

import (
	"context"
	"log/slog"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Pinger is what Monitor needs of a pool (*pgxpool.Pool).
type Pinger interface {
	Ping(ctx context.Context) error
}

// Health is the database as a Monitor last saw it.
type Health struct {
	Up      bool
	Since   time.Time // when it became up or down
	Checked time.Time // last check; zero before the first
	Err     string    // why it is down; empty when up
}

// MonitorConfig configures a Monitor.
type MonitorConfig struct {
	// Every is how often a reachable database is checked (default 5s). An
	// unreachable one is checked with jittered backoff from 100ms up to Every.
	Every time.Duration
	// Timeout bounds one check (default 2s).
	Timeout time.Duration
	Logger  *slog.Logger
	// Registerer receives modgate_database_up; nil: no metric.
	Registerer prometheus.Registerer
}

// Monitor watches whether PostgreSQL answers, for readiness, the console and
// the log. It changes nothing itself: the pool replaces broken connections on
// its own when PostgreSQL comes back (pgxpool checks a connection idle for more
// than a second before handing it out), and the Monitor's checks, spaced by
// backoff, are what notice and log that it has.
type Monitor struct {
	pool  Pinger
	cfg   MonitorConfig
	log   *slog.Logger
	gauge prometheus.Gauge

	mu     sync.Mutex
	health Health
}

// NewMonitor returns a Monitor of pool; call Run to start checking. Until the
// first check it reports the database up: Open has just pinged it.
func NewMonitor(pool Pinger, cfg MonitorConfig) *Monitor {
	if cfg.Every <= 0 {
		cfg.Every = 5 * time.Second
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 2 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	m := &Monitor{pool: pool, cfg: cfg, log: log, health: Health{Up: true, Since: time.Now()}}
	m.gauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "modgate_database_up",
		Help: "1 while PostgreSQL answers this replica, 0 while it does not (the replica then serves degraded: cached tokens, spooled audit events, no publish, delete, token administration or audit queries).",
	})
	m.gauge.Set(1)
	if cfg.Registerer != nil {
		cfg.Registerer.MustRegister(m.gauge)
	}
	return m
}

const monitorBackoffMin = 100 * time.Millisecond

// Run checks the database until ctx is done.
func (m *Monitor) Run(ctx context.Context) {
	backoff := monitorBackoffMin
	for {
		wait := m.cfg.Every
		if !m.Check(ctx) {
			wait = backoff/2 + rand.N(backoff/2+1)
			backoff = min(backoff*2, m.cfg.Every)
		} else {
			backoff = monitorBackoffMin
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// Check pings the database once, records and logs the result, and reports
// whether it answered.
func (m *Monitor) Check(ctx context.Context) bool {
	cctx, cancel := context.WithTimeout(ctx, m.cfg.Timeout)
	err := m.pool.Ping(cctx)
	cancel()
	if ctx.Err() != nil {
		return m.Health().Up
	}
	now := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	was := m.health
	m.health.Checked = now
	switch {
	case err != nil && was.Up:
		m.health = Health{Up: false, Since: now, Checked: now, Err: err.Error()}
		m.gauge.Set(0)
		m.log.LogAttrs(ctx, slog.LevelWarn, "database: PostgreSQL unreachable; serving degraded (cached API tokens, audit events spooled to disk) and reconnecting with backoff",
			slog.String("err", err.Error()))
	case err != nil:
		m.health.Err = err.Error()
	case !was.Up:
		m.health = Health{Up: true, Since: now, Checked: now}
		m.gauge.Set(1)
		m.log.LogAttrs(ctx, slog.LevelInfo, "database: PostgreSQL reachable again; reconnected",
			slog.Duration("outage", now.Sub(was.Since)))
	}
	return err == nil
}

// Health returns the last result.
func (m *Monitor) Health() Health {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.health
}
