package upstream

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/metrics"
)

// max_concurrency bounds the requests in flight to one mirror, counting a body
// still being read as in flight.
func TestMirrorMaxConcurrency(t *testing.T) {
	t.Parallel()
	var inflight, peak atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n := inflight.Add(1)
		defer inflight.Add(-1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, "v1.0.0\n")
	}))
	t.Cleanup(srv.Close)
	cfg := Config{RetryBackoff: time.Millisecond}
	e, err := NewMirror(MirrorConfig{URL: srv.URL, MaxConcurrency: 2}, cfg)
	if err != nil {
		t.Fatal(err)
	}
	c := NewChain([]Entry{e}, cfg, nil, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := c.Fetch(context.Background(), "m.test/x/@v/list", 0)
			if err != nil {
				t.Error(err)
				return
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}()
	}
	wg.Wait()
	if p := peak.Load(); p != 2 {
		t.Errorf("peak concurrent requests = %d, want 2", p)
	}
}

// Basic credentials are sent to the mirror and never appear in its name.
func TestMirrorBasicCredentials(t *testing.T) {
	t.Parallel()
	var got atomic.Value
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, p, _ := r.BasicAuth()
		got.Store(u + ":" + p)
		io.WriteString(w, "ok")
	}))
	t.Cleanup(srv.Close)
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("hunter2\n"), 0o600)
	e, err := NewMirror(MirrorConfig{URL: srv.URL, Username: "ci", PasswordFile: pw}, Config{})
	if err != nil {
		t.Fatal(err)
	}
	c := NewChain([]Entry{e}, Config{RetryBackoff: time.Millisecond}, nil, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	resp, err := c.Fetch(context.Background(), "m.test/x/@v/list", 1<<10)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got.Load() != "ci:hunter2" {
		t.Errorf("mirror saw credentials %q", got.Load())
	}
	if strings.Contains(e.Name(), "hunter2") || strings.Contains(resp.Source, "hunter2") {
		t.Errorf("credentials in the mirror's name: %s", e.Name())
	}
}

func TestNewMirrorRejectsBadSettings(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	os.WriteFile(notPEM, []byte("not a certificate"), 0o644)
	tests := []struct {
		name string
		mc   MirrorConfig
		want string
	}{
		{"fail/userinfo-in-url", MirrorConfig{URL: "https://u:p@mirror.example"}, "not the URL"},
		{"fail/ca-not-pem", MirrorConfig{URL: "https://mirror.example", CAFile: notPEM}, "no PEM certificate"},
		{"fail/missing-key-pair", MirrorConfig{URL: "https://mirror.example", ClientCertFile: filepath.Join(dir, "c"), ClientKeyFile: filepath.Join(dir, "k")}, "loading client certificate"},
		{"fail/missing-password-file", MirrorConfig{URL: "https://mirror.example", Username: "u", PasswordFile: filepath.Join(dir, "nope")}, "password_file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := NewMirror(tt.mc, Config{})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err = %v, want %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "u:p@") {
				t.Errorf("error leaks credentials: %v", err)
			}
		})
	}
}

// Offline, nothing is contacted and the not-found says why.
func TestOfflineChain(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits.Add(1) }))
	t.Cleanup(srv.Close)
	entries, _ := ParseList(srv.URL)
	c := NewChain(entries, Config{Offline: true}, nil, slog.New(slog.DiscardHandler), metrics.New(prometheus.NewRegistry()))
	_, err := c.Fetch(context.Background(), "m.test/x/@v/list", 1<<10)
	if !errors.Is(err, derrors.NotFound) || !strings.Contains(derrors.PublicMessage(err), "not in the offline mirror") {
		t.Errorf("err = %v, want a not-found naming the offline mirror", err)
	}
	if hits.Load() != 0 {
		t.Errorf("offline chain contacted the mirror %d times", hits.Load())
	}
}
