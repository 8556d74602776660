package bench

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"
)

// Targets from PRODUCT.md for the warm paths, as ratios to a baseline serving the
// same files over TLS in the same run: Go's bare net/http file server (the floor
// for a Go server, HTTP/1.1 and HTTP/2) and nginx.
var (
	warmSmallGoTarget    = Target{Op: ">=", Bound: 0.85}
	warmSmallNginxTarget = Target{Op: ">=", Bound: 0.5}
	warmZipTarget        = Target{Op: ">=", Bound: 0.9}
)

// warmSetup is everything the warm scenarios share: the populated graph served by
// a loopback upstream, certificates, a database, tools, and the object lists.
type warmSetup struct {
	tree        string
	small, zips []string
	zipBytes    int64
	certs       *benchCerts
	up          *fileUpstream
	db          *benchDatabase
	wrk         string
	nginx       string
	h2load      string // only for the HTTP/2 scenario
	goFS        string // the Go file server's binary, when built
	closers     []func()
}

func (s *warmSetup) Close() {
	for i := len(s.closers) - 1; i >= 0; i-- {
		s.closers[i]()
	}
}

// newWarmSetup prepares the warm scenarios; withDB says whether a database is
// needed (token auth and audit).
func newWarmSetup(ctx context.Context, env *Env, withDB bool) (_ *warmSetup, err error) {
	s := &warmSetup{}
	defer func() {
		if err != nil {
			s.Close()
		}
	}()
	if s.wrk, err = ensureTool(ctx, env.Log, "wrk", "wrk"); err != nil {
		return nil, err
	}
	if s.nginx, err = ensureTool(ctx, env.Log, "nginx", "nginx"); err != nil {
		return nil, err
	}
	if s.tree, _, err = populate(ctx, env); err != nil {
		return nil, err
	}
	if s.small, s.zips, s.zipBytes, err = treeObjects(s.tree); err != nil {
		return nil, err
	}
	if s.certs, err = writeBenchCerts(env.Dir); err != nil {
		return nil, err
	}
	if s.up, err = startFileUpstream(s.tree, 0); err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { s.up.Close() })
	if withDB {
		if s.db, err = startBenchDatabase(ctx); err != nil {
			return nil, err
		}
		s.closers = append(s.closers, s.db.Close)
	}
	return s, nil
}

// startModgate starts a secure modgate (with the database when there is one) and
// fills its cache with paths.
func (s *warmSetup) startModgate(ctx context.Context, env *Env, name string, withDB bool, paths []string) (*secureModgate, error) {
	opts := secureOptions{}
	if withDB {
		opts.Database = s.db
	}
	mg, err := startSecureModgate(ctx, env, name, s.up.URL, filepath.Join(env.Dir, name, "cache"), s.certs, opts)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { mg.Stop() })
	env.Log.Info("filling modgate's cache", "modgate", mg.URL, "objects", len(paths))
	if err := fetchAll(ctx, s.certs.httpsClient(8), mg.URL, mg.Token, paths); err != nil {
		return nil, err
	}
	return mg, nil
}

func (s *warmSetup) startNginx(ctx context.Context, env *Env, http2 bool) (*nginxProc, error) {
	n, err := startNginx(ctx, s.nginx, filepath.Join(env.Dir, "nginx"), s.tree, s.certs.CertFile, s.certs.KeyFile, http2)
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { n.Stop() })
	return n, nil
}

// startGoFileServer builds (once) and starts Go's bare file server on the tree.
func (s *warmSetup) startGoFileServer(ctx context.Context, env *Env) (*goFileServer, error) {
	if s.goFS == "" {
		bin, err := buildGoFileServer(ctx, env.Go, env.Dir)
		if err != nil {
			return nil, err
		}
		s.goFS = bin
	}
	g, err := startGoFileServer(ctx, s.goFS, s.tree, s.certs.CertFile, s.certs.KeyFile, filepath.Join(env.Dir, "gofileserver.log"))
	if err != nil {
		return nil, err
	}
	s.closers = append(s.closers, func() { g.Stop() })
	return g, nil
}

// loadSide is one server under load: a name, its URL and the wrk script (the
// token differs per side), or an h2load command line for HTTP/2.
type loadSide struct {
	name, url, script string
	pprof             string  // modgate's profile endpoint, when profiling
	h2                *h2Load // load with h2load over HTTP/2 instead of wrk
}

// loadSeries are the per-run wrk figures of each side.
type loadSeries struct {
	rps, mbps, p50, p99, mean map[string][]float64
}

// alternate loads each side env.LoadRuns times after a warm-up run each, in
// ABBA order (ABC CBA ... for three sides), and collects the figures.
func alternate(ctx context.Context, env *Env, wrkBin string, conns int, sides []loadSide) (loadSeries, error) {
	ls := loadSeries{rps: map[string][]float64{}, mbps: map[string][]float64{}, p50: map[string][]float64{}, p99: map[string][]float64{}, mean: map[string][]float64{}}
	for i := range 1 + env.LoadRuns {
		order := make([]int, len(sides))
		for j := range order {
			order[j] = j
			if i%2 == 1 {
				order[j] = len(sides) - 1 - j
			}
		}
		for _, j := range order {
			side := sides[j]
			d := env.LoadDuration
			if i == 0 { // warm-up: connections, page cache, modgate's decision and token caches
				d = time.Second
			}
			var profDone chan error
			if i == 1 && side.pprof != "" && env.ProfileDir != "" {
				profDone = make(chan error, 1)
				go func() {
					profDone <- saveProfile(ctx, side.pprof, env.LoadDuration, filepath.Join(env.ProfileDir, filepath.Base(env.Dir)+"-"+strings.ReplaceAll(side.name, " ", "-")+".pprof"))
				}()
			}
			var r wrkResult
			var err error
			if side.h2 != nil {
				load := *side.h2
				load.Duration, load.WarmUp = d, i == 0
				r, err = load.run(ctx)
			} else {
				load := wrkLoad{Bin: wrkBin, Threads: 2, Connections: conns, Duration: d, Script: side.script, WarmUp: i == 0}
				r, err = load.run(ctx, side.url)
			}
			if profDone != nil {
				if perr := <-profDone; perr != nil {
					env.Log.Warn("profile", "err", perr)
				}
			}
			if err != nil {
				return ls, fmt.Errorf("%s: %w", side.name, err)
			}
			env.Log.Info("load run", "side", side.name, "run", i, "timed", i > 0, "req_per_s", round3(r.ReqPerSec), "MB_per_s", round3(r.MBPerSec), "p50_ms", ms(r.P50), "p99_ms", ms(r.P99), "mean_ms", ms(r.Mean))
			if i == 0 {
				continue
			}
			ls.rps[side.name] = append(ls.rps[side.name], round3(r.ReqPerSec))
			ls.mbps[side.name] = append(ls.mbps[side.name], round3(r.MBPerSec))
			ls.p50[side.name] = append(ls.p50[side.name], ms(r.P50))
			ls.p99[side.name] = append(ls.p99[side.name], ms(r.P99))
			ls.mean[side.name] = append(ls.mean[side.name], ms(r.Mean))
		}
	}
	return ls, nil
}

// saveProfile fetches a CPU profile of d (less a second, so it ends inside the
// load run) from a pprof endpoint into path.
func saveProfile(ctx context.Context, endpoint string, d time.Duration, path string) error {
	secs := max(1, int(d.Seconds())-1)
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s?seconds=%d", endpoint, secs), nil)
	if err != nil {
		return err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("bench: profile: %s", resp.Status)
	}
	if err := mkdir(filepath.Dir(path)); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, resp.Body); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// ratioResult compares the medians of series[a] and series[b], with a bootstrap
// interval of the ratio, judged against target when there is one.
func ratioResult(figure, unit string, series map[string][]float64, a, b string, target *Target) Result {
	r := Result{
		Figure: figure, Unit: unit, Value: median(series[a]), BaselineName: b, Baseline: median(series[b]),
		Samples: map[string][]float64{a: series[a], b: series[b]},
	}
	r.Ratio = r.Value / r.Baseline
	r.Target = target
	lo, hi := bootstrapCI(func(s ...[]float64) float64 { return median(s[0]) / median(s[1]) }, series[a], series[b])
	r.judge(lo, hi)
	return r
}

func runWarmSmall(ctx context.Context, env *Env) ([]Result, error) {
	s, err := newWarmSetup(ctx, env, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	mg, err := s.startModgate(ctx, env, "modgate", true, s.small)
	if err != nil {
		return nil, err
	}
	ng, err := s.startNginx(ctx, env, false)
	if err != nil {
		return nil, err
	}
	gofs, err := s.startGoFileServer(ctx, env)
	if err != nil {
		return nil, err
	}
	mgScript, err := writeWrkScriptNamed(env.Dir, "modgate-small", s.small, mg.Token)
	if err != nil {
		return nil, err
	}
	plainScript, err := writeWrkScriptNamed(env.Dir, "plain-small", s.small, "")
	if err != nil {
		return nil, err
	}
	cpu0, _ := mg.CPU()
	req0, _, _ := mg.LogStats()
	ls, err := alternate(ctx, env, s.wrk, 64, []loadSide{
		{name: "modgate", url: mg.URL, script: mgScript, pprof: mg.PprofURL},
		{name: "go file server", url: gofs.URL, script: plainScript},
		{name: "nginx", url: ng.URL, script: plainScript},
	})
	if err != nil {
		return nil, err
	}
	cpu1, _ := mg.CPU()
	req1, _, _ := mg.LogStats()
	figure := fmt.Sprintf("warm .info/.mod, 64 connections, TLS + token + policy + audit: requests/s (%d objects)", len(s.small))
	vsGo := ratioResult(figure, "req/s", ls.rps, "modgate", "go file server", &warmSmallGoTarget)
	vsNginx := ratioResult(figure, "req/s", ls.rps, "modgate", "nginx", &warmSmallNginxTarget)
	if n := req1 - req0; n > 0 {
		vsGo.Notes = append(vsGo.Notes, fmt.Sprintf("modgate CPU per request over all load runs: %.0f µs (user %.0f, system %.0f), %d requests",
			float64((cpu1.Total()-cpu0.Total()).Microseconds())/float64(n),
			float64((cpu1.User-cpu0.User).Microseconds())/float64(n),
			float64((cpu1.Sys-cpu0.Sys).Microseconds())/float64(n), n))
	}
	vsGo.Notes = append(vsGo.Notes, "go file server: net/http FileServer over TLS and nothing else (internal/bench/cmd/gofileserver)")
	return []Result{
		vsGo,
		vsNginx,
		ratioResult("warm .info/.mod: p50 latency", "ms", ls.p50, "modgate", "go file server", nil),
		ratioResult("warm .info/.mod: p99 latency", "ms", ls.p99, "modgate", "go file server", nil),
		ratioResult("warm .info/.mod: p50 latency", "ms", ls.p50, "modgate", "nginx", nil),
	}, nil
}

// runWarmSmallH2 is warm-small over HTTP/2, as the go command speaks to an https
// GOPROXY: h2load with 16 connections of 8 concurrent streams against modgate,
// Go's bare file server and nginx, each negotiating h2 by ALPN.
func runWarmSmallH2(ctx context.Context, env *Env) ([]Result, error) {
	s, err := newWarmSetup(ctx, env, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	if s.h2load, err = ensureTool(ctx, env.Log, "h2load", "nghttp2-client"); err != nil {
		return nil, err
	}
	mg, err := s.startModgate(ctx, env, "modgate", true, s.small)
	if err != nil {
		return nil, err
	}
	ng, err := s.startNginx(ctx, env, true)
	if err != nil {
		return nil, err
	}
	gofs, err := s.startGoFileServer(ctx, env)
	if err != nil {
		return nil, err
	}
	side := func(name, url, token string) (loadSide, error) {
		f, err := writeURIFile(env.Dir, strings.ReplaceAll(name, " ", "-"), url, s.small)
		if err != nil {
			return loadSide{}, err
		}
		return loadSide{name: name, url: url, h2: &h2Load{Bin: s.h2load, Threads: 2, Clients: 16, Streams: 8, URIFile: f, Token: token}}, nil
	}
	var sides []loadSide
	for _, sd := range []struct{ name, url, token string }{{"modgate", mg.URL, mg.Token}, {"go file server", gofs.URL, ""}, {"nginx", ng.URL, ""}} {
		ls, err := side(sd.name, sd.url, sd.token)
		if err != nil {
			return nil, err
		}
		sides = append(sides, ls)
	}
	sides[0].pprof = mg.PprofURL
	ls, err := alternate(ctx, env, s.wrk, 0, sides)
	if err != nil {
		return nil, err
	}
	figure := fmt.Sprintf("warm .info/.mod over HTTP/2, 16 connections × 8 streams, TLS + token + policy + audit: requests/s (%d objects)", len(s.small))
	vsGo := ratioResult(figure, "req/s", ls.rps, "modgate", "go file server", &warmSmallGoTarget)
	vsGo.Notes = append(vsGo.Notes, "h2load (nghttp2-client); go file server: net/http FileServer over TLS and nothing else")
	return []Result{
		vsGo,
		ratioResult(figure, "req/s", ls.rps, "modgate", "nginx", nil),
		ratioResult("warm .info/.mod over HTTP/2: mean latency", "ms", ls.mean, "modgate", "go file server", nil),
	}, nil
}

func runWarmZips(ctx context.Context, env *Env) ([]Result, error) {
	s, err := newWarmSetup(ctx, env, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	mg, err := s.startModgate(ctx, env, "modgate", true, s.zips)
	if err != nil {
		return nil, err
	}
	ng, err := s.startNginx(ctx, env, false)
	if err != nil {
		return nil, err
	}
	mgScript, err := writeWrkScriptNamed(env.Dir, "modgate-zips", s.zips, mg.Token)
	if err != nil {
		return nil, err
	}
	ngScript, err := writeWrkScriptNamed(env.Dir, "nginx-zips", s.zips, "")
	if err != nil {
		return nil, err
	}
	ls, err := alternate(ctx, env, s.wrk, 64, []loadSide{{name: "modgate", url: mg.URL, script: mgScript, pprof: mg.PprofURL}, {name: "nginx", url: ng.URL, script: ngScript}})
	if err != nil {
		return nil, err
	}
	mbps := ratioResult(fmt.Sprintf("warm .zip, 64 connections, TLS + token + policy + audit: MB/s (%d zips of the download-all graph, %.1f MB, mean %.0f KB)",
		len(s.zips), float64(s.zipBytes)/1e6, float64(s.zipBytes)/float64(len(s.zips))/1e3), "MB/s", ls.mbps, "modgate", "nginx", &warmZipTarget)
	return []Result{
		mbps,
		ratioResult("warm .zip: p50 latency", "ms", ls.p50, "modgate", "nginx", nil),
		ratioResult("warm .zip: p99 latency", "ms", ls.p99, "modgate", "nginx", nil),
	}, nil
}

// runAuditCost measures what the audit trail (and the token check that comes with
// a database) adds to a small-object request: the same warm load against a modgate
// with a database and one without, alternating.
func runAuditCost(ctx context.Context, env *Env) ([]Result, error) {
	s, err := newWarmSetup(ctx, env, true)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	on, err := s.startModgate(ctx, env, "modgate-audit", true, s.small)
	if err != nil {
		return nil, err
	}
	off, err := s.startModgate(ctx, env, "modgate-noaudit", false, s.small)
	if err != nil {
		return nil, err
	}
	onScript, err := writeWrkScriptNamed(env.Dir, "audit-on", s.small, on.Token)
	if err != nil {
		return nil, err
	}
	offScript, err := writeWrkScriptNamed(env.Dir, "audit-off", s.small, "")
	if err != nil {
		return nil, err
	}
	// Only the side under load runs requests, but both processes are up: the idle
	// one costs nothing but memory.
	ls, err := alternate(ctx, env, s.wrk, 64, []loadSide{{name: "audit on", url: on.URL, script: onScript, pprof: on.PprofURL}, {name: "audit off", url: off.URL, script: offScript, pprof: off.PprofURL}})
	if err != nil {
		return nil, err
	}
	note := "audit on: token auth + audit into PostgreSQL; audit off: no database, anonymous callers (loopback); both TLS + policy"
	res := []Result{
		ratioResult("warm .info/.mod: p50 latency, audit on vs off", "ms", ls.p50, "audit on", "audit off", nil),
		ratioResult("warm .info/.mod: p99 latency, audit on vs off", "ms", ls.p99, "audit on", "audit off", nil),
		ratioResult("warm .info/.mod: requests/s, audit on vs off", "req/s", ls.rps, "audit on", "audit off", nil),
	}
	res[0].Notes = append(res[0].Notes, note)
	return res, nil
}

func writeWrkScriptNamed(dir, name string, paths []string, token string) (string, error) {
	sub := filepath.Join(dir, "wrk-"+name)
	if err := mkdir(sub); err != nil {
		return "", err
	}
	return writeWrkScript(sub, paths, token)
}
