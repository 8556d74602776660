package mirror

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
)

// Syncer pre-warms a running modgate over its own HTTP(S) protocol endpoint, so
// every object goes through the normal path — authentication, policy, upstream
// fetch, verification, cache, audit — and any replica may be targeted.
type Syncer struct {
	// BaseURL is modgate's URL, e.g. https://modgate.corp.example.
	BaseURL string
	// Client makes the requests; its transport carries TLS settings.
	Client *http.Client
	// Token is sent as a Bearer token when set.
	Token string
	// Concurrency bounds parallel fetches; 0 means 4.
	Concurrency int
	// Latest is how many versions of each bare module path to sync; 0 means 1.
	Latest int
	// ScratchDir holds zips while they are hashed; "" uses the system default.
	ScratchDir string
	// Graph also syncs, transitively, every module version each synced go.mod
	// requires — .info, .mod and .zip — which is a superset of what `go mod
	// download all` fetches (it sees the pruned graph). Without it only the
	// targets themselves are synced, which for a go.sum is what builds and
	// `go mod download` with no arguments need.
	Graph bool
	// Progress, when set, is called after every finished object.
	Progress func(done, total, failed int)
}

// Failure is one object that could not be synced.
type Failure struct {
	Object string `json:"object"`
	Error  string `json:"error"`
}

// Summary reports a sync.
type Summary struct {
	Modules  int       `json:"modules"`
	Objects  int       `json:"objects"`
	Bytes    int64     `json:"bytes"`
	Failed   int       `json:"failed"`
	Failures []Failure `json:"failures,omitempty"`
	Seconds  float64   `json:"seconds"`
}

// ErrHashMismatch marks an object whose content disagrees with the go.sum given.
var ErrHashMismatch = errors.New("checksum mismatch")

// Run resolves bare module paths to their latest versions, then fetches the
// .info, .mod and (unless ModOnly) .zip of every target. Objects already cached
// are cheap hits, so a sync that was interrupted is simply run again. The error
// is non-nil when any object failed; the summary says which.
func (s *Syncer) Run(ctx context.Context, targets []Target, bare []string) (Summary, error) {
	start := time.Now()
	var sum Summary
	var mu sync.Mutex
	fail := func(obj string, err error) {
		mu.Lock()
		sum.Failed++
		if len(sum.Failures) < 100 {
			sum.Failures = append(sum.Failures, Failure{Object: obj, Error: err.Error()})
		}
		mu.Unlock()
	}
	latest := max(s.Latest, 1)
	for _, p := range bare {
		body, err := s.get(ctx, p, "/@v/list", nil)
		if err != nil {
			fail(p+"/@v/list", err)
			continue
		}
		sum.Objects++
		for _, v := range LatestVersions(body, latest) {
			targets = append(targets, Target{Path: p, Version: v})
		}
	}
	if s.Graph {
		// `go mod download all` fetches the zip of every module in the graph.
		for i := range targets {
			targets[i].ModOnly = false
		}
	}
	targets = dedupe(targets)

	type job struct {
		t   Target
		ext string
	}
	var done, failed, total atomic.Int64
	var bytesN atomic.Int64
	seen := map[string]bool{}
	for wave := targets; len(wave) > 0 && ctx.Err() == nil; {
		var jobs []job
		for _, t := range wave {
			seen[t.String()] = true
			jobs = append(jobs, job{t, ".info"}, job{t, ".mod"})
			if !t.ModOnly {
				jobs = append(jobs, job{t, ".zip"})
			}
		}
		sum.Modules += len(wave)
		total.Add(int64(len(jobs)))
		var next []Target
		ch := make(chan job)
		var wg sync.WaitGroup
		for range max(s.Concurrency, 1) {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for j := range ch {
					n, reqs, err := s.fetch(ctx, j.t, j.ext)
					bytesN.Add(n)
					if err != nil {
						failed.Add(1)
						fail(j.t.String()+" "+j.ext, err)
					}
					if s.Graph && len(reqs) > 0 {
						mu.Lock()
						next = append(next, reqs...)
						mu.Unlock()
					}
					d := done.Add(1)
					if s.Progress != nil {
						s.Progress(int(d), int(total.Load()), int(failed.Load()))
					}
				}
			}()
		}
	feed:
		for _, j := range jobs {
			select {
			case ch <- j:
			case <-ctx.Done():
				break feed
			}
		}
		close(ch)
		wg.Wait()
		wave = nil
		for _, t := range dedupe(next) {
			if !seen[t.String()] {
				wave = append(wave, t)
			}
		}
	}
	sum.Objects += int(done.Load() - failed.Load())
	sum.Bytes = bytesN.Load()
	sum.Seconds = time.Since(start).Seconds()
	if err := ctx.Err(); err != nil {
		return sum, fmt.Errorf("mirror: sync interrupted: %w", err)
	}
	if sum.Failed > 0 {
		return sum, fmt.Errorf("mirror: %d of %d objects failed", sum.Failed, int(total.Load())+len(bare))
	}
	return sum, nil
}

func dedupe(ts []Target) []Target {
	idx := map[string]int{}
	var out []Target
	for _, t := range ts {
		if i, ok := idx[t.String()]; ok {
			o := &out[i]
			o.ModOnly = o.ModOnly && t.ModOnly
			o.ZipSum = cmp(o.ZipSum, t.ZipSum)
			o.ModSum = cmp(o.ModSum, t.ModSum)
			continue
		}
		idx[t.String()] = len(out)
		out = append(out, t)
	}
	return out
}

func cmp(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

// fetch gets one object and verifies it: a .mod or .zip against the go.sum hash
// when one was given (a mismatch is reported loudly, as the go command would).
func (s *Syncer) fetch(ctx context.Context, t Target, ext string) (n int64, requires []Target, err error) {
	escVer, err := module.EscapeVersion(t.Version)
	if err != nil {
		return 0, nil, err
	}
	suffix := "/@v/" + escVer + ext
	if ext != ".zip" {
		body, err := s.get(ctx, t.Path, suffix, nil)
		if err != nil {
			return 0, nil, err
		}
		if ext == ".mod" && t.ModSum != "" {
			h, err := GoModHash(body)
			if err != nil {
				return 0, nil, err
			}
			if h != t.ModSum {
				return 0, nil, fmt.Errorf("%w: %s/go.mod: modgate served %s, go.sum says %s", ErrHashMismatch, t, h, t.ModSum)
			}
		}
		if ext == ".mod" && s.Graph {
			requires, err = ParseGoMod(t.String()+"/go.mod", body)
			if err != nil {
				return 0, nil, err
			}
		}
		return int64(len(body)), requires, nil
	}
	f, err := os.CreateTemp(s.ScratchDir, "sync-*.zip")
	if err != nil {
		return 0, nil, fmt.Errorf("mirror: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := s.get(ctx, t.Path, suffix, f); err != nil {
		return 0, nil, err
	}
	st, err := f.Stat()
	if err != nil {
		return 0, nil, err
	}
	h, err := dirhash.HashZip(f.Name(), dirhash.Hash1)
	if err != nil {
		return st.Size(), nil, fmt.Errorf("mirror: %s: hashing zip: %w", t, err)
	}
	if t.ZipSum != "" && h != t.ZipSum {
		return st.Size(), nil, fmt.Errorf("%w: %s: modgate served %s, go.sum says %s", ErrHashMismatch, t, h, t.ZipSum)
	}
	return st.Size(), nil, nil
}

// get fetches modulePath+suffix. With w set the body is copied there; otherwise it
// is returned (small objects only).
func (s *Syncer) get(ctx context.Context, modulePath, suffix string, w io.Writer) ([]byte, error) {
	esc, err := module.EscapePath(modulePath)
	if err != nil {
		return nil, err
	}
	u := strings.TrimSuffix(s.BaseURL, "/") + "/" + esc + suffix
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("User-Agent", "modgate-sync")
	if s.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.Token)
	}
	client := s.Client
	if client == nil {
		client = http.DefaultClient
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 512))
		return nil, fmt.Errorf("%s %s: %s", resp.Status, esc+suffix, strings.TrimSpace(string(msg)))
	}
	if w != nil {
		_, err := io.Copy(w, resp.Body)
		return nil, err
	}
	var buf bytes.Buffer
	if _, err := io.Copy(&buf, io.LimitReader(resp.Body, 64<<20)); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}
