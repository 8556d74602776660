package mirror

import (
	"context"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Job is a scheduled sync: the modules (bare paths at their Latest versions, or
// exact path@version entries) re-synced every Every.
type Job struct {
	Every       time.Duration
	OnStart     bool
	Modules     []string
	Latest      int
	Concurrency int
}

// Scheduler runs Jobs inside `modgate serve`.
type Scheduler struct {
	jobs      []Job
	transport http.RoundTripper
	scratch   string
	log       *slog.Logger

	objects  *prometheus.CounterVec
	failures *prometheus.CounterVec
	lastRun  *prometheus.GaugeVec
	lastOK   *prometheus.GaugeVec
}

// NewScheduler returns a scheduler whose syncs are served by transport — modgate's
// own handler (server.InProcessTransport), so synced objects take the normal path.
// Metrics are registered on reg.
func NewScheduler(jobs []Job, transport http.RoundTripper, scratchDir string, log *slog.Logger, reg prometheus.Registerer) *Scheduler {
	s := &Scheduler{
		jobs: jobs, transport: transport, scratch: scratchDir, log: log,
		objects: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_mirror_sync_objects_total",
			Help: "Objects fetched or confirmed in the cache by scheduled syncs, by job index.",
		}, []string{"job"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "modgate_mirror_sync_failures_total",
			Help: "Objects scheduled syncs could not fetch or verify, by job index.",
		}, []string{"job"}),
		lastRun: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modgate_mirror_sync_last_run_timestamp_seconds",
			Help: "When each scheduled sync job last finished.",
		}, []string{"job"}),
		lastOK: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "modgate_mirror_sync_last_success_timestamp_seconds",
			Help: "When each scheduled sync job last finished without failures.",
		}, []string{"job"}),
	}
	reg.MustRegister(s.objects, s.failures, s.lastRun, s.lastOK)
	return s
}

// Run runs every job on its schedule until ctx ends.
func (s *Scheduler) Run(ctx context.Context) {
	var wg sync.WaitGroup
	for i, j := range s.jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.loop(ctx, strconv.Itoa(i), j)
		}()
	}
	wg.Wait()
}

func (s *Scheduler) loop(ctx context.Context, name string, j Job) {
	if j.OnStart {
		s.RunJob(ctx, name, j)
	}
	t := time.NewTicker(j.Every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.RunJob(ctx, name, j)
		}
	}
}

// RunJob runs one job now and records its metrics.
func (s *Scheduler) RunJob(ctx context.Context, name string, j Job) Summary {
	exact, bare, err := ParseModuleArgs(j.Modules)
	if err != nil {
		s.log.ErrorContext(ctx, "mirror: scheduled sync", "job", name, "err", err)
		s.failures.WithLabelValues(name).Inc()
		return Summary{}
	}
	sy := &Syncer{
		BaseURL:     "http://modgate.in-process",
		Client:      &http.Client{Transport: s.transport},
		Concurrency: j.Concurrency,
		Latest:      j.Latest,
		ScratchDir:  s.scratch,
	}
	if sy.Concurrency == 0 {
		sy.Concurrency = 4
	}
	sum, err := sy.Run(ctx, exact, bare)
	s.objects.WithLabelValues(name).Add(float64(sum.Objects))
	s.failures.WithLabelValues(name).Add(float64(sum.Failed))
	now := float64(time.Now().Unix())
	s.lastRun.WithLabelValues(name).Set(now)
	if err != nil {
		s.log.WarnContext(ctx, "mirror: scheduled sync finished with failures", "job", name, "objects", sum.Objects, "failed", sum.Failed, "failures", sum.Failures, "err", err)
		return sum
	}
	s.lastOK.WithLabelValues(name).Set(now)
	s.log.InfoContext(ctx, "mirror: scheduled sync done", "job", name, "modules", sum.Modules, "objects", sum.Objects, "bytes", sum.Bytes, "seconds", sum.Seconds)
	return sum
}
