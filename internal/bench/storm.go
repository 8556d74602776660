package bench

import (
	"archive/zip"
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"
)

// stormParams size a cold storm. PRODUCT.md's figure is defaultStorm; tests use
// a small one.
type stormParams struct {
	Clients int
	ZipSize int
	Latency time.Duration // the upstream's, before each response
	// Rounds storms, each for a zip of its own (v1.0.<round>), alternate with as
	// many storms of the same clients straight at the upstream: one storm is a
	// single sample, and a busy machine moves it by tens of milliseconds.
	Rounds int
	// HashEvery: every client's length is checked, every n-th one's bytes are
	// hashed too (hashing 10 GB would measure sha256, not modgate).
	HashEvery int
}

// defaultStorm is the cold storm as PRODUCT.md states it: 200 concurrent requests
// for one uncached zip cause exactly one upstream fetch, and the first byte
// reaches the client within upstream latency + 5 ms.
func defaultStorm() stormParams {
	return stormParams{Clients: 200, ZipSize: 50 << 20, Latency: 20 * time.Millisecond, Rounds: 5, HashEvery: 20}
}

const (
	stormModule = "example.com/storm"
	// soloVersion is fetched cold by a single client first: the same path without
	// the contention, which separates modgate's per-request cost from scheduling.
	soloVersion   = "v1.1.0"
	stormExtraTTF = 5 // ms over the upstream's own time to first byte
)

func runColdStorm(ctx context.Context, env *Env) ([]Result, error) {
	return runStorm(ctx, env, defaultStorm())
}

// runStorm starts modgate with an empty cache over an upstream that answers
// after p.Latency, releases p.Clients requests for one uncached zip at once, and measures how many fetches reached the upstream and how long the
// clients waited for their first body byte, against the same storm sent straight
// to the upstream (the floor no proxy can beat, on this machine, at this load).
func runStorm(ctx context.Context, env *Env, p stormParams) ([]Result, error) {
	tree := filepath.Join(env.Dir, "tree")
	sums := make(map[string][32]byte)
	versions := []string{soloVersion}
	for r := range p.Rounds {
		versions = append(versions, fmt.Sprintf("v1.0.%d", r))
	}
	for _, v := range versions {
		sum, err := writeStormModule(tree, v, p.ZipSize)
		if err != nil {
			return nil, err
		}
		sums[v] = sum
	}
	zipPath := func(v string) string { return "/" + stormModule + "/@v/" + v + ".zip" }

	up, err := startFileUpstream(tree, p.Latency)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	mg, err := startModgate(ctx, env.Modgate, up.URL, filepath.Join(env.Dir, "modgate-cache"), filepath.Join(env.Dir, "modgate.log"))
	if err != nil {
		return nil, err
	}
	defer mg.Stop()
	client := &http.Client{Transport: &http.Transport{
		Proxy:               nil, // loopback only
		MaxIdleConnsPerHost: p.Clients,
		DisableCompression:  true,
	}}
	defer client.CloseIdleConnections()

	// One client at a time: the upstream's own time to first byte, then modgate's
	// for a zip it does not hold.
	var upSolo []float64
	for range 5 {
		r, err := fetchTimed(ctx, client, up.URL+zipPath(soloVersion), int64(p.ZipSize), sums[soloVersion], nil)
		if err != nil {
			return nil, fmt.Errorf("direct from upstream: %w", err)
		}
		upSolo = append(upSolo, ms(r.ttfb))
	}
	solo, err := fetchTimed(ctx, client, mg.URL+"/"+stormModule+"/@v/"+soloVersion+".zip", int64(p.ZipSize), sums[soloVersion], nil)
	if err != nil {
		return nil, fmt.Errorf("single cold fetch through modgate: %w", err)
	}

	var (
		fetches                    []float64
		mgP50, mgP99, upP50, upP99 []float64
		extraP50, extraP99         []float64
		mgTotal                    []float64
	)
	for r := range p.Rounds {
		v := versions[r+1]
		env.Log.Info("storm", "round", r+1, "clients", p.Clients, "zip_mb", p.ZipSize>>20, "upstream_latency", p.Latency)
		sides := []string{"upstream", "modgate"}
		if r%2 == 1 {
			sides = []string{"modgate", "upstream"}
		}
		for _, side := range sides {
			base := up.URL
			warmURL := up.URL + "/"
			if side == "modgate" {
				base, warmURL = mg.URL, mg.URL+"/healthz"
			}
			// Open the connections first, so the storm measures the server and not
			// 200 TCP handshakes racing the first request.
			if err := warmConnections(ctx, client, warmURL, p.Clients); err != nil {
				return nil, err
			}
			before := up.Requests()
			results, total, err := storm(ctx, client, p, base+zipPath(v), sums[v])
			if err != nil {
				return nil, fmt.Errorf("storm %d, %s: %w", r+1, side, err)
			}
			ttfb := sortedTTFB(results)
			if side == "upstream" {
				upP50, upP99 = append(upP50, median(ttfb)), append(upP99, percentile(ttfb, 0.99))
				continue
			}
			fetches = append(fetches, float64(up.Requests()-before))
			mgP50, mgP99 = append(mgP50, median(ttfb)), append(mgP99, percentile(ttfb, 0.99))
			mgTotal = append(mgTotal, seconds(total))
		}
		extraP50 = append(extraP50, round3(mgP50[r]-upP50[r]))
		extraP99 = append(extraP99, round3(mgP99[r]-upP99[r]))
	}
	// Once more for a zip modgate now holds: what 200 concurrent requests cost it
	// without any fetch, for comparison.
	if err := warmConnections(ctx, client, mg.URL+"/healthz", p.Clients); err != nil {
		return nil, err
	}
	warmResults, _, err := storm(ctx, client, p, mg.URL+zipPath(versions[1]), sums[versions[1]])
	if err != nil {
		return nil, fmt.Errorf("warm storm through modgate: %w", err)
	}
	warmTTFB := sortedTTFB(warmResults)

	fetchResult := Result{
		Figure:  fmt.Sprintf("upstream fetches per uncached %d MB zip, %d concurrent clients (worst of %d storms)", p.ZipSize>>20, p.Clients, p.Rounds),
		Unit:    "fetches",
		Value:   slices.Max(fetches),
		Target:  &Target{Op: "<=", Bound: 1},
		Samples: map[string][]float64{"fetches per storm": fetches},
	}
	pass := !slices.ContainsFunc(fetches, func(f float64) bool { return f != 1 })
	fetchResult.Pass = &pass

	extra := Result{
		Figure: fmt.Sprintf("time to first byte over the upstream's own, p50 of %d concurrent clients (median of %d storms)", p.Clients, p.Rounds),
		Unit:   "ms",
		Value:  median(extraP50),
		Target: &Target{Op: "<=", Bound: stormExtraTTF},
		Samples: map[string][]float64{
			"p50 through modgate, cold (ms)":  mgP50,
			"p50 straight to upstream (ms)":   upP50,
			"p50 difference per storm (ms)":   extraP50,
			"all bodies complete after (s)":   mgTotal,
			"upstream alone, one client (ms)": upSolo,
		},
		Notes: []string{
			fmt.Sprintf("upstream latency %v; its own time to first byte %.3f ms one client at a time", p.Latency, median(upSolo)),
			fmt.Sprintf("every client's length checked, every %dth one's SHA-256; clients wait at a gate after their first byte until all have one, so the figure measures how soon modgate starts every stream rather than how %d bulk transfers share the CPUs", p.HashEvery, p.Clients),
		},
	}
	extra.judge(bootstrapCI(func(s ...[]float64) float64 { return median(s[0]) }, extraP50))

	tail := Result{
		Figure: fmt.Sprintf("time to first byte over the upstream's own, p99 of %d concurrent clients (median of %d storms)", p.Clients, p.Rounds),
		Unit:   "ms",
		Value:  median(extraP99),
		Samples: map[string][]float64{
			"p99 through modgate, cold (ms)": mgP99,
			"p99 straight to upstream (ms)":  upP99,
		},
	}
	single := Result{
		Figure: "time to first byte over the upstream's own, a single cold client",
		Unit:   "ms",
		Value:  round3(ms(solo.ttfb) - median(upSolo)),
	}
	warm := Result{
		Figure: fmt.Sprintf("time to first byte of a cached zip, p50 of %d concurrent clients", p.Clients),
		Unit:   "ms",
		Value:  median(warmTTFB),
		Notes:  []string{fmt.Sprintf("p99 %.3f ms, max %.3f ms", percentile(warmTTFB, 0.99), warmTTFB[len(warmTTFB)-1])},
	}
	return []Result{fetchResult, extra, tail, single, warm}, nil
}

func sortedTTFB(rs []timedFetch) []float64 {
	out := make([]float64, 0, len(rs))
	for _, r := range rs {
		out = append(out, ms(r.ttfb))
	}
	slices.Sort(out)
	return out
}

// storm releases p.Clients GETs of url at once and returns each one's timing
// and the time until all bodies were complete.
func storm(ctx context.Context, client *http.Client, p stormParams, url string, sum [32]byte) ([]timedFetch, time.Duration, error) {
	var (
		wg      sync.WaitGroup
		release = make(chan struct{})
		results = make([]timedFetch, p.Clients)
		errs    = make([]error, p.Clients)
		// firstBytes holds every client after its first byte until all have one (or
		// failed), so the time to first byte measures how soon modgate starts every
		// stream, not how 200 bulk transfers share two CPUs afterwards.
		firstBytes = newGate(p.Clients)
	)
	for i := range p.Clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-release
			want := [32]byte{}
			if i%p.HashEvery == 0 {
				want = sum
			}
			results[i], errs[i] = fetchTimed(ctx, client, url, int64(p.ZipSize), want, firstBytes)
		}()
	}
	start := time.Now()
	close(release)
	wg.Wait()
	return results, time.Since(start), errors.Join(errs...)
}

// timedFetch is one client's view of a download.
type timedFetch struct {
	ttfb time.Duration // until the first body byte
	size int64
}

// fetchTimed GETs url, timing the first body byte, and checks the body's length
// and, unless wantSum is zero, its SHA-256. With a gate, it arrives at the gate
// after the first byte (or on failure) and waits for it to open before reading on.
func fetchTimed(ctx context.Context, c *http.Client, url string, wantSize int64, wantSum [32]byte, g *gate) (r timedFetch, err error) {
	if g != nil {
		arrived := false
		arrive := func() {
			if !arrived {
				arrived = true
				g.arrive()
			}
		}
		defer arrive()
		r, err = fetchTimedGated(ctx, c, url, wantSize, wantSum, func() { arrive(); g.wait(ctx) })
		return r, err
	}
	return fetchTimedGated(ctx, c, url, wantSize, wantSum, func() {})
}

func fetchTimedGated(ctx context.Context, c *http.Client, url string, wantSize int64, wantSum [32]byte, afterFirstByte func()) (timedFetch, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return timedFetch{}, err
	}
	start := time.Now()
	resp, err := c.Do(req)
	if err != nil {
		return timedFetch{}, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return timedFetch{}, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	br := bufio.NewReaderSize(resp.Body, 64<<10)
	if _, err := br.Peek(1); err != nil {
		return timedFetch{}, fmt.Errorf("GET %s: %w", url, err)
	}
	r := timedFetch{ttfb: time.Since(start)}
	afterFirstByte()
	var w io.Writer = io.Discard
	h := sha256.New()
	if wantSum != ([32]byte{}) {
		w = h
	}
	if r.size, err = io.Copy(w, br); err != nil {
		return r, fmt.Errorf("GET %s: after %d bytes: %w", url, r.size, err)
	}
	if r.size != wantSize {
		return r, fmt.Errorf("GET %s: %d bytes, want %d", url, r.size, wantSize)
	}
	if wantSum != ([32]byte{}) && [32]byte(h.Sum(nil)) != wantSum {
		return r, fmt.Errorf("GET %s: body differs from the upstream's", url)
	}
	return r, nil
}

// gate opens once n parties have arrived.
type gate struct {
	mu   sync.Mutex
	left int
	open chan struct{}
}

func newGate(n int) *gate { return &gate{left: n, open: make(chan struct{})} }

func (g *gate) arrive() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.left--
	if g.left == 0 {
		close(g.open)
	}
}

func (g *gate) wait(ctx context.Context) {
	select {
	case <-g.open:
	case <-ctx.Done():
	}
}

// warmConnections opens n keep-alive connections to url's host by holding n
// requests open at once.
func warmConnections(ctx context.Context, c *http.Client, url string, n int) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
			if err != nil {
				errs[i] = err
				return
			}
			resp, err := c.Do(req)
			if err != nil {
				errs[i] = err
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	return errors.Join(errs...)
}

// writeStormModule writes a module zip of exactly size bytes (incompressible
// content, stored uncompressed, padded to size) with its .info and .mod into a
// GOPROXY tree, and returns the zip's SHA-256.
func writeStormModule(tree, version string, size int) ([32]byte, error) {
	dir := filepath.Join(tree, stormModule, "@v")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return [32]byte{}, fmt.Errorf("bench: %w", err)
	}
	gomod := "module " + stormModule + "\n\ngo 1.26\n"
	if err := os.WriteFile(filepath.Join(dir, version+".info"), []byte(`{"Version":"`+version+`","Time":"2026-01-01T00:00:00Z"}`), 0o644); err != nil {
		return [32]byte{}, fmt.Errorf("bench: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, version+".mod"), []byte(gomod), 0o644); err != nil {
		return [32]byte{}, fmt.Errorf("bench: %w", err)
	}
	data, err := stormZip(version, gomod, size)
	if err != nil {
		return [32]byte{}, err
	}
	if err := os.WriteFile(filepath.Join(dir, version+".zip"), data, 0o644); err != nil {
		return [32]byte{}, fmt.Errorf("bench: %w", err)
	}
	return sha256.Sum256(data), nil
}

func stormZip(version, gomod string, size int) ([]byte, error) {
	prefix := stormModule + "@" + version + "/"
	rng := rand.NewChaCha8([32]byte{'m', 'o', 'd', 'g', 'a', 't', 'e'})
	// The zip's own overhead (headers, central directory) is small and fixed; size
	// the payload so that the whole zip is exactly size bytes.
	build := func(payload int) ([]byte, error) {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		w, err := zw.CreateHeader(&zip.FileHeader{Name: prefix + "go.mod", Method: zip.Store})
		if err != nil {
			return nil, err
		}
		io.WriteString(w, gomod)
		w, err = zw.CreateHeader(&zip.FileHeader{Name: prefix + "blob.bin", Method: zip.Store})
		if err != nil {
			return nil, err
		}
		if _, err := io.CopyN(w, rng, int64(payload)); err != nil {
			return nil, err
		}
		if err := zw.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	probe, err := build(0)
	if err != nil {
		return nil, fmt.Errorf("bench: building the storm zip: %w", err)
	}
	data, err := build(size - len(probe))
	if err != nil {
		return nil, fmt.Errorf("bench: building the storm zip: %w", err)
	}
	if len(data) != size {
		return nil, fmt.Errorf("bench: storm zip is %d bytes, want %d", len(data), size)
	}
	return data, nil
}

func ms(d time.Duration) float64 { return round3(float64(d) / float64(time.Millisecond)) }

func round3(v float64) float64 { return math.Round(v*1000) / 1000 }

// percentile returns the p-quantile (0 < p ≤ 1) of sorted xs, nearest rank.
func percentile(sorted []float64, p float64) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(math.Ceil(float64(len(sorted))*p)) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}
