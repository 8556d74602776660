package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// goFileServer is the floor for a Go server: internal/bench/cmd/gofileserver,
// net/http's FileServer over TLS and nothing else, in a process of its own (so
// that it shares the machine as modgate does, and its CPU time is its own).
type goFileServer struct {
	URL  string
	cmd  *exec.Cmd
	done chan error
}

// buildGoFileServer compiles the baseline server into dir with the go command
// the bench uses for its clients.
func buildGoFileServer(ctx context.Context, goBin, dir string) (string, error) {
	root, err := repoRoot()
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "gofileserver")
	cmd := exec.CommandContext(ctx, goBin, "build", "-trimpath", "-o", bin, "./internal/bench/cmd/gofileserver")
	cmd.Dir = root
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("bench: building the Go file server: %w\n%s", err, tail(out, 2000))
	}
	return bin, nil
}

// startGoFileServer serves root over TLS (HTTP/1.1 and HTTP/2) with the given
// certificate on a free loopback port.
func startGoFileServer(ctx context.Context, bin, root, certFile, keyFile, logPath string) (*goFileServer, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd := exec.Command(bin, "-root", root, "-cert", certFile, "-key", keyFile)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: %w", err)
	}
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: starting the Go file server: %w", err)
	}
	g := &goFileServer{cmd: cmd, done: make(chan error, 1)}
	addr := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		if sc.Scan() {
			addr <- strings.TrimSpace(sc.Text())
		}
		io.Copy(io.Discard, stdout)
		g.done <- cmd.Wait()
		logf.Close()
	}()
	select {
	case a := <-addr:
		g.URL = "https://" + a
		return g, nil
	case err := <-g.done:
		return nil, fmt.Errorf("bench: the Go file server exited (%v):\n%s", err, tailFile(logPath, 2000))
	case <-time.After(15 * time.Second):
		g.Stop()
		return nil, errors.New("bench: the Go file server did not listen within 15s")
	case <-ctx.Done():
		g.Stop()
		return nil, ctx.Err()
	}
}

// Pid is the server's process id, for CPU accounting.
func (g *goFileServer) Pid() int { return g.cmd.Process.Pid }

// Stop ends the server.
func (g *goFileServer) Stop() error {
	g.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-g.done:
		return nil
	case <-time.After(10 * time.Second):
		g.cmd.Process.Kill()
		<-g.done
		return errors.New("bench: the Go file server did not stop within 10s")
	}
}
