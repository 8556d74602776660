package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"
)

// wrkResult is one wrk run, as its done() hook reports it.
type wrkResult struct {
	Requests   int64
	Bytes      int64
	Duration   time.Duration
	P50, P99   time.Duration
	Mean       time.Duration // h2load reports a mean, not percentiles
	StatusErrs int64         // responses other than 2xx/3xx
	SocketErrs int64         // connect, read, write errors and timeouts
	ReqPerSec  float64
	MBPerSec   float64 // response bytes (headers included) per second, in MB (10^6)
}

// wrkLoad is a wrk command line: connections over threads for a duration,
// cycling through paths with an optional bearer token.
type wrkLoad struct {
	Bin         string
	Threads     int
	Connections int
	Duration    time.Duration
	Script      string // written by writeWrkScript
	// WarmUp marks an untimed warm-up run: on a loaded machine its second may
	// end before the first TLS handshakes do, so zero requests is not an error
	// there (errors still are).
	WarmUp bool
}

// writeWrkScript writes the Lua script wrk runs: each thread walks the path list
// from its own starting point, sends the token when there is one, and done()
// prints one machine-readable line (so the figures are wrk's own counters, not
// its rounded human-readable summary).
func writeWrkScript(dir string, paths []string, token string) (string, error) {
	var b strings.Builder
	b.WriteString("local paths = {\n")
	for _, p := range paths {
		fmt.Fprintf(&b, "  %s,\n", strconv.Quote(p))
	}
	b.WriteString("}\n")
	fmt.Fprintf(&b, "local token = %s\n", strconv.Quote(token))
	b.WriteString(`local i = 0
local headers = {}
function init(args)
  i = math.random(#paths)
  if token ~= "" then headers["Authorization"] = "Bearer " .. token end
end
function request()
  i = i + 1
  if i > #paths then i = 1 end
  return wrk.format("GET", paths[i], headers)
end
function done(summary, latency, requests)
  local e = summary.errors
  io.write(string.format("MODGATE-BENCH requests=%d bytes=%d duration_us=%d p50_us=%d p99_us=%d status_errors=%d socket_errors=%d\n",
    summary.requests, summary.bytes, summary.duration, latency:percentile(50), latency:percentile(99),
    e.status, e.connect + e.read + e.write + e.timeout))
end
`)
	path := filepath.Join(dir, "wrk-paths.lua")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return path, nil
}

// run runs wrk against baseURL and parses its report. Any non-2xx response or
// socket error fails the run: a 401 or 404 is fast and would flatter the figure.
func (l wrkLoad) run(ctx context.Context, baseURL string) (wrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(l.Threads), "-c", strconv.Itoa(l.Connections),
		"-d", fmt.Sprintf("%ds", max(1, int(l.Duration.Seconds()))),
		"--timeout", "10s", "-s", l.Script, baseURL,
	}
	cmd := exec.CommandContext(ctx, l.Bin, args...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("bench: wrk %s: %w\n%s", baseURL, err, tail(out, 2000))
	}
	r, err := parseWrk(out)
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(out, 2000))
	}
	if r.StatusErrs > 0 || r.SocketErrs > 0 || r.Requests == 0 && !l.WarmUp {
		return r, fmt.Errorf("bench: wrk %s: %d requests, %d non-2xx/3xx responses, %d socket errors", baseURL, r.Requests, r.StatusErrs, r.SocketErrs)
	}
	return r, nil
}

func parseWrk(out []byte) (wrkResult, error) {
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		rest, ok := strings.CutPrefix(sc.Text(), "MODGATE-BENCH ")
		if !ok {
			continue
		}
		v := map[string]int64{}
		for _, kv := range strings.Fields(rest) {
			k, val, _ := strings.Cut(kv, "=")
			n, err := strconv.ParseInt(val, 10, 64)
			if err != nil {
				return wrkResult{}, fmt.Errorf("bench: wrk report: %q: %w", kv, err)
			}
			v[k] = n
		}
		r := wrkResult{
			Requests:   v["requests"],
			Bytes:      v["bytes"],
			Duration:   time.Duration(v["duration_us"]) * time.Microsecond,
			P50:        time.Duration(v["p50_us"]) * time.Microsecond,
			P99:        time.Duration(v["p99_us"]) * time.Microsecond,
			StatusErrs: v["status_errors"],
			SocketErrs: v["socket_errors"],
		}
		if s := r.Duration.Seconds(); s > 0 {
			r.ReqPerSec = float64(r.Requests) / s
			r.MBPerSec = float64(r.Bytes) / s / 1e6
		}
		return r, nil
	}
	return wrkResult{}, fmt.Errorf("bench: wrk printed no MODGATE-BENCH line")
}

func mkdir(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}
