package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"sync"
	"time"
)

// memoryTarget is PRODUCT.md's bound on modgate's resident memory while it serves
// 256 concurrent downloads of a large zip.
var memoryTarget = Target{Op: "<=", Bound: 150}

const (
	memoryClients = 256
	memoryZipSize = 50 << 20
	memoryVersion = "v1.2.0"
)

// runMemory measures modgate's peak resident set (VmHWM) while 256 clients
// download one 50 MB zip at once over TLS: cold (an empty cache: one upstream
// fetch streamed to every client) and warm (a new modgate process over the now
// filled cache, so the peak is the warm path's alone).
func runMemory(ctx context.Context, env *Env) ([]Result, error) {
	tree := filepath.Join(env.Dir, "tree")
	if _, err := writeStormModule(tree, memoryVersion, memoryZipSize); err != nil {
		return nil, err
	}
	up, err := startFileUpstream(tree, 20*time.Millisecond)
	if err != nil {
		return nil, err
	}
	defer up.Close()
	certs, err := writeBenchCerts(env.Dir)
	if err != nil {
		return nil, err
	}
	cacheDir := filepath.Join(env.Dir, "modgate-cache")
	path := "/" + stormModule + "/@v/" + memoryVersion + ".zip"
	var out []Result
	for _, phase := range []string{"cold", "warm"} {
		mg, err := startSecureModgate(ctx, env, "modgate-"+phase, up.URL, cacheDir, certs, secureOptions{})
		if err != nil {
			return nil, err
		}
		base, _ := mg.PeakRSS()
		upBefore := up.Requests()
		start := time.Now()
		err = downloadConcurrently(ctx, certs.httpsClient(memoryClients), mg.URL+path, memoryClients, memoryZipSize)
		elapsed := time.Since(start)
		peak, perr := mg.PeakRSS()
		mg.Stop()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", phase, err)
		}
		if perr != nil {
			return nil, perr
		}
		env.Log.Info("memory storm", "phase", phase, "peak_rss_mb", peak>>20, "seconds", seconds(elapsed))
		r := Result{
			Figure: fmt.Sprintf("peak RSS, %d concurrent downloads of a 50 MB zip over TLS, %s", memoryClients, phase),
			Unit:   "MB", Value: round3(float64(peak) / (1 << 20)), Target: &memoryTarget,
			Notes: []string{
				fmt.Sprintf("RSS peak before the downloads: %.1f MB; %d × 50 MB served in %.1f s; %d upstream requests",
					float64(base)/(1<<20), memoryClients, elapsed.Seconds(), up.Requests()-upBefore),
				"one storm per phase: a peak is a maximum, not a sample to take the median of",
			},
		}
		r.Pass = boolPtr(r.Target.met(r.Value))
		out = append(out, r)
	}
	return out, nil
}

// downloadConcurrently starts n GETs of url at once and checks that each reads
// size bytes.
func downloadConcurrently(ctx context.Context, c *http.Client, url string, n int, size int64) error {
	var wg sync.WaitGroup
	errs := make([]error, n)
	for i := range n {
		wg.Go(func() {
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
			defer resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs[i] = fmt.Errorf("GET %s: %s", url, resp.Status)
				return
			}
			got, err := io.Copy(io.Discard, resp.Body)
			if err == nil && got != size {
				err = fmt.Errorf("GET %s: %d bytes, want %d", url, got, size)
			}
			errs[i] = err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}
