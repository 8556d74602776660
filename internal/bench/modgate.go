package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// modgateProc is a running `modgate serve`: the real binary, as users run it.
type modgateProc struct {
	URL     string
	LogPath string

	cmd  *exec.Cmd
	log  *os.File
	done chan error

	stopOnce sync.Once
	stopErr  error
}

// startModgate runs `modgate serve` on a free loopback port over upstream with an
// empty cache in cacheDir, its JSON log going to logPath, and waits until it
// listens.
func startModgate(ctx context.Context, bin, upstream, cacheDir, logPath string, extraArgs ...string) (*modgateProc, error) {
	return startModgateConfig(ctx, bin, benchConfig, upstream, cacheDir, logPath, extraArgs...)
}

// startModgateConfig is startModgate with config as the configuration file.
func startModgateConfig(ctx context.Context, bin, config, upstream, cacheDir, logPath string, extraArgs ...string) (*modgateProc, error) {
	// Anonymous callers on loopback, with the repository's policy deciding every
	// request: the proxy path with policy on. The warm scenarios add TLS, tokens
	// and audit (startSecureModgate).
	cfgPath := filepath.Join(filepath.Dir(logPath), "modgate-bench.yaml")
	if err := os.WriteFile(cfgPath, []byte(config), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	args := append([]string{"serve", "--config", cfgPath, "--listen", "127.0.0.1:0", "--cache-dir", cacheDir, "--upstream", upstream, "--anonymous"}, extraArgs...)
	return startModgateArgs(ctx, bin, logPath, args)
}

// benchConfig is the part of every benchmark modgate's configuration that differs
// from the defaults. The benchmark module graphs are in no checksum database the
// harness can reach, so server-side verification (sumdb.verify) is off, and so is
// the per-identity rate limit: each scenario's load comes from one identity.
const benchConfig = "sumdb:\n  verify: false\nserver:\n  rate_limit:\n    requests_per_second: 0\n"

// startModgateArgs runs bin with args (a `serve` command line), its JSON log
// going to logPath, and waits until it listens.
func startModgateArgs(ctx context.Context, bin, logPath string, args []string) (*modgateProc, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd := exec.Command(bin, args...)
	if root, err := repoRoot(); err == nil {
		cmd.Dir = root // where policy/ lives
	}
	// The caller's environment minus anything that could send modgate off the
	// machine: its upstream is on loopback, and a dead proxy catches the rest.
	cmd.Env = append(filterEnv(os.Environ(), "GOPROXY", "HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY"),
		"HTTP_PROXY="+deadProxy, "HTTPS_PROXY="+deadProxy, "NO_PROXY=")
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: starting modgate: %w", err)
	}
	p := &modgateProc{LogPath: logPath, cmd: cmd, log: logf, done: make(chan error, 1)}

	// serve prints "modgate listening on http://ADDR" once it is listening.
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if u, ok := strings.CutPrefix(sc.Text(), "modgate listening on "); ok {
				addr <- u
				break
			}
		}
		io.Copy(io.Discard, stdout)
		p.done <- cmd.Wait()
	}()
	select {
	case u := <-addr:
		p.URL = strings.TrimSpace(u)
		return p, nil
	case err := <-p.done:
		logf.Close()
		return nil, fmt.Errorf("bench: modgate exited before listening (%v); log:\n%s", err, tailFile(logPath, 2000))
	case <-time.After(30 * time.Second):
		p.Stop()
		return nil, fmt.Errorf("bench: modgate did not listen within 30s; log:\n%s", tailFile(logPath, 2000))
	case <-ctx.Done():
		p.Stop()
		return nil, ctx.Err()
	}
}

// Stop asks modgate to shut down gracefully and kills it if it does not.
func (p *modgateProc) Stop() error {
	p.stopOnce.Do(func() { p.stopErr = p.stop() })
	return p.stopErr
}

func (p *modgateProc) stop() error {
	defer p.log.Close()
	p.cmd.Process.Signal(syscall.SIGTERM) // fails only if it has exited, which done reports
	select {
	case err := <-p.done:
		var ee *exec.ExitError
		if errors.As(err, &ee) && !ee.Exited() { // killed by our signal
			return nil
		}
		return err
	case <-time.After(15 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		return errors.New("bench: modgate did not stop within 15s of SIGTERM")
	}
}

// cpuTime is a process's CPU time, split as the kernel accounts it: user time is
// modgate's own code, system time mostly the kernel copying bytes to sockets.
type cpuTime struct{ User, Sys time.Duration }

func (c cpuTime) Total() time.Duration { return c.User + c.Sys }

// PeakRSS returns the process's peak resident set size in bytes so far (VmHWM in
// /proc/<pid>/status, Linux).
func (p *modgateProc) PeakRSS() (int64, error) {
	return procPeakRSS(p.cmd.Process.Pid)
}

func procPeakRSS(pid int) (int64, error) {
	v := procField(fmt.Sprintf("/proc/%d/status", pid), "VmHWM")
	var kb int64
	if _, err := fmt.Sscanf(v, "%d", &kb); err != nil {
		return 0, fmt.Errorf("bench: no VmHWM for process %d: %q", pid, v)
	}
	return kb << 10, nil
}

// CPU returns the CPU time modgate has used so far, from /proc/<pid>/stat (Linux;
// clock ticks are 100 Hz on every Linux the go command supports).
func (p *modgateProc) CPU() (cpuTime, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", p.cmd.Process.Pid))
	if err != nil {
		return cpuTime{}, fmt.Errorf("bench: %w", err)
	}
	return parseProcStatCPU(data)
}

func parseProcStatCPU(data []byte) (cpuTime, error) {
	// The command name (field 2) may hold spaces; the fields after it are fixed.
	i := bytes.LastIndexByte(data, ')')
	if i < 0 {
		return cpuTime{}, errors.New("bench: malformed /proc stat")
	}
	f := strings.Fields(string(data[i+1:]))
	if len(f) < 13 {
		return cpuTime{}, errors.New("bench: malformed /proc stat")
	}
	utime, err1 := strconv.ParseInt(f[11], 10, 64) // field 14
	stime, err2 := strconv.ParseInt(f[12], 10, 64) // field 15
	if err1 != nil || err2 != nil {
		return cpuTime{}, errors.New("bench: malformed /proc stat")
	}
	const tick = time.Second / 100
	return cpuTime{User: time.Duration(utime) * tick, Sys: time.Duration(stime) * tick}, nil
}

// logFlushWait outlasts modgate serve's log batching (internal/logwriter flushes
// every 100 ms), so that a request's line is in the file when it is counted.
const logFlushWait = 250 * time.Millisecond

// LogStats returns how many access-log lines and bytes modgate has written, after
// waiting for modgate's batched log to reach the file.
func (p *modgateProc) LogStats() (requests int, size int64, err error) {
	time.Sleep(logFlushWait)
	data, err := os.ReadFile(p.LogPath)
	if err != nil {
		return 0, 0, fmt.Errorf("bench: %w", err)
	}
	return bytes.Count(data, []byte(`"msg":"request"`)), int64(len(data)), nil
}

func filterEnv(env []string, drop ...string) []string {
	var out []string
next:
	for _, kv := range env {
		k, _, _ := strings.Cut(kv, "=")
		for _, d := range drop {
			if strings.EqualFold(k, d) {
				continue next
			}
		}
		out = append(out, kv)
	}
	return out
}

func tailFile(path string, n int) string {
	data, _ := os.ReadFile(path)
	return string(tail(data, n))
}

// repoRoot finds the repository root (the directory holding go.mod) above the
// working directory.
func repoRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("bench: no go.mod above the working directory")
		}
		dir = parent
	}
}
