package main

import (
	"bytes"
	"context"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/certgen"
)

func TestRunAgent(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	if _, err := certgen.Init(certgen.InitOptions{Dir: dir, Teams: []string{"payments"}}); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--upstream", "https://127.0.0.1:1", "--listen", "127.0.0.1:0",
		"--cert", filepath.Join(dir, certgen.ClientCertFile("payments")),
		"--key", filepath.Join(dir, certgen.ClientKeyFile("payments")),
		"--ca", filepath.Join(dir, certgen.CACertFile),
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var stdout, stderr agentOutputBuffer
	done := make(chan error, 1)
	go func() { done <- runAgent(ctx, args, &stdout, &stderr) }()

	line := regexp.MustCompile(`go env -w GOPROXY=http://127\.0\.0\.1:[1-9][0-9]*\n`)
	deadline := time.Now().Add(5 * time.Second)
	for !line.MatchString(stdout.String()) {
		if time.Now().After(deadline) {
			t.Fatalf("no GOPROXY line printed; stdout:\n%s\nstderr:\n%s", stdout.String(), stderr.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("runAgent: %v", err)
	}
}

func TestRunAgentRefuses(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		args    []string
		wantErr string
	}{
		{name: "non-loopback-listen", args: []string{"--upstream", "https://m.corp", "--cert", "c", "--key", "k", "--listen", "0.0.0.0:7070"}, wantErr: "not loopback"},
		{name: "no-upstream", args: []string{"--cert", "c", "--key", "k"}, wantErr: "upstream URL is required"},
		{name: "missing-cert-file", args: []string{"--upstream", "https://m.corp", "--cert", "/nonexistent/c", "--key", "k"}, wantErr: "no such file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			err := runAgent(context.Background(), tt.args, &bytes.Buffer{}, &bytes.Buffer{})
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("runAgent: %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
	var stderr bytes.Buffer
	if err := runAgent(context.Background(), []string{"--help"}, &bytes.Buffer{}, &stderr); err != nil || !strings.Contains(stderr.String(), "Usage: modgate agent") {
		t.Errorf("--help: %v\n%s", err, stderr.String())
	}
}

// agentOutputBuffer is a bytes.Buffer safe for one writer and one reader.
type agentOutputBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *agentOutputBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *agentOutputBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
