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

// h2Load is an h2load (Debian's nghttp2-client) command line: clients
// connections with streams concurrent streams each over HTTP/2 (TLS, ALPN h2;
// h2load fails when the server does not negotiate h2), for a duration, cycling
// through the URIs of uriFile with an optional bearer token. It is how the go
// command talks to an https GOPROXY: one connection, many streams.
type h2Load struct {
	Bin      string
	Threads  int
	Clients  int
	Streams  int
	Duration time.Duration
	URIFile  string // one absolute URI per line, written by writeURIFile
	Token    string
	WarmUp   bool // as wrkLoad.WarmUp
}

// writeURIFile writes base+path for every path, one a line, for h2load -i.
func writeURIFile(dir, name, base string, paths []string) (string, error) {
	var b strings.Builder
	for _, p := range paths {
		b.WriteString(base + p + "\n")
	}
	path := filepath.Join(dir, "h2load-"+name+".txt")
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("bench: %w", err)
	}
	return path, nil
}

// run runs h2load and parses its report. As with wrk, any failed, errored or
// non-2xx request fails the run.
func (l h2Load) run(ctx context.Context) (wrkResult, error) {
	args := []string{
		"-t", strconv.Itoa(l.Threads), "-c", strconv.Itoa(l.Clients), "-m", strconv.Itoa(l.Streams),
		"-D", strconv.Itoa(max(1, int(l.Duration.Seconds()))), "-i", l.URIFile,
	}
	if l.Token != "" {
		args = append(args, "-H", "Authorization: Bearer "+l.Token)
	}
	out, err := exec.CommandContext(ctx, l.Bin, args...).CombinedOutput()
	if err != nil {
		return wrkResult{}, fmt.Errorf("bench: h2load: %w\n%s", err, tail(out, 2000))
	}
	r, err := parseH2Load(out)
	if err != nil {
		return r, fmt.Errorf("%w\n%s", err, tail(out, 2000))
	}
	if r.StatusErrs > 0 || r.SocketErrs > 0 || r.Requests == 0 && !l.WarmUp {
		return r, fmt.Errorf("bench: h2load: %d requests, %d non-2xx responses, %d failed or errored\n%s", r.Requests, r.StatusErrs, r.SocketErrs, tail(out, 2000))
	}
	return r, nil
}

// parseH2Load reads h2load's summary:
//
//	finished in 8.00s, 10412.88 req/s, 3.32MB/s
//	requests: 83303 total, 83431 started, 83303 done, 83303 succeeded, 0 failed, 0 errored, 0 timeout
//	status codes: 83303 2xx, 0 3xx, 0 4xx, 0 5xx
//	traffic: 26.55MB (27839012) total, ...
//	time for request:   123us   45.12ms   1.22ms   1.01ms   87.21%
func parseH2Load(out []byte) (wrkResult, error) {
	var r wrkResult
	var sawFinished, sawRequests bool
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "finished in "):
			f := strings.Fields(strings.NewReplacer(",", " ").Replace(strings.TrimPrefix(line, "finished in ")))
			if len(f) < 3 || f[2] != "req/s" {
				return r, fmt.Errorf("bench: h2load report: %q", line)
			}
			d, err := time.ParseDuration(f[0])
			if err != nil {
				return r, fmt.Errorf("bench: h2load report: %q: %w", line, err)
			}
			r.Duration = d
			sawFinished = true
		case strings.HasPrefix(line, "requests: "):
			counts := h2Counts(strings.TrimPrefix(line, "requests: "))
			r.Requests = counts["succeeded"]
			r.SocketErrs = counts["failed"] + counts["errored"] + counts["timeout"]
			sawRequests = true
		case strings.HasPrefix(line, "status codes: "):
			counts := h2Counts(strings.TrimPrefix(line, "status codes: "))
			r.StatusErrs = counts["3xx"] + counts["4xx"] + counts["5xx"]
		case strings.HasPrefix(line, "traffic: "):
			if f := strings.Fields(line); len(f) >= 3 {
				n, err := strconv.ParseInt(strings.Trim(f[2], "()"), 10, 64)
				if err == nil {
					r.Bytes = n
				}
			}
		case strings.HasPrefix(line, "time for request:"):
			f := strings.Fields(strings.TrimPrefix(line, "time for request:"))
			if len(f) >= 3 {
				if d, err := time.ParseDuration(strings.Replace(f[2], "us", "µs", 1)); err == nil {
					r.Mean = d
				}
			}
		}
	}
	if !sawFinished || !sawRequests {
		return r, fmt.Errorf("bench: h2load printed no summary")
	}
	if s := r.Duration.Seconds(); s > 0 {
		r.ReqPerSec = float64(r.Requests) / s
		r.MBPerSec = float64(r.Bytes) / s / 1e6
	}
	return r, nil
}

// h2Counts parses "83303 total, 0 failed, ..." into {"total": 83303, "failed": 0}.
func h2Counts(s string) map[string]int64 {
	m := map[string]int64{}
	for _, part := range strings.Split(s, ",") {
		f := strings.Fields(part)
		if len(f) != 2 {
			continue
		}
		if n, err := strconv.ParseInt(f[0], 10, 64); err == nil {
			m[f[1]] = n
		}
	}
	return m
}
