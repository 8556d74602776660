package e2e

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

var (
	buildOnce sync.Once
	binPath   string
	buildErr  error
)

// modgateBinary builds cmd/modgate once per test process.
func modgateBinary(t *testing.T) string {
	t.Helper()
	buildOnce.Do(func() {
		dir, err := os.MkdirTemp("", "modgate-e2e-bin-")
		if err != nil {
			buildErr = err
			return
		}
		binPath = filepath.Join(dir, "modgate")
		cmd := exec.Command("go", "build", "-race", "-o", binPath, "github.com/modgate/modgate/cmd/modgate")
		if out, err := cmd.CombinedOutput(); err != nil {
			buildErr = fmt.Errorf("building modgate: %v\n%s", err, out)
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return binPath
}

// process is a running modgate.
type process struct {
	URL  string
	cmd  *exec.Cmd
	logs *safeBuffer
	done chan struct{}
}

// startModgate runs `modgate serve` with args on a free loopback port and waits
// until /healthz answers.
func startModgate(t *testing.T, args ...string) *process {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	p := &process{URL: "http://" + addr, logs: &safeBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(modgateBinary(t), append([]string{"serve", "--listen", addr}, args...)...)
	p.cmd.Dir = "../.." // the repository root, where the default policy/ lives
	p.cmd.Stdout = p.logs
	p.cmd.Stderr = p.logs
	p.cmd.Env = append(os.Environ(), "GORACE=halt_on_error=1")
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("modgate logs:\n%s", p.logs.String())
		}
		if strings.Contains(p.logs.String(), "WARNING: DATA RACE") {
			t.Errorf("data race in modgate:\n%s", p.logs.String())
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := http.Get(p.URL + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return p
			}
		}
		select {
		case <-p.done:
			t.Fatalf("modgate exited during start-up:\n%s", p.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("modgate did not become healthy:\n%s", p.logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Kill sends SIGKILL, as a crash or the OOM killer would.
func (p *process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

type safeBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *safeBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *safeBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// logLines returns modgate's JSON log lines containing substr.
func (p *process) logLines(substr string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	for sc.Scan() {
		if strings.Contains(sc.Text(), substr) {
			out = append(out, sc.Text())
		}
	}
	return out
}

var _ = context.Background
