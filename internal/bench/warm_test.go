package bench

import (
	"context"
	"log/slog"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestWarmLoad drives the warm scenarios' pieces end to end on a two-module tree:
// nginx (the Debian package, installed when missing) and the real modgate binary
// over TLS with the bench certificates, filled through its upstream, loaded by wrk
// with the generated Lua script. A path neither server has must fail the run, not
// count as a fast answer.
func TestWarmLoad(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	wrkBin, err := ensureTool(ctx, log, "wrk", "wrk")
	if err != nil {
		t.Fatal(err)
	}
	nginxBin, err := ensureTool(ctx, log, "nginx", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := makeTree(t)
	small, zips, _, err := treeObjects(tree)
	if err != nil {
		t.Fatal(err)
	}
	if len(small) != 4 || len(zips) != 2 {
		t.Fatalf("treeObjects: %d small objects and %d zips, want 4 and 2", len(small), len(zips))
	}
	dir := t.TempDir()
	certs, err := writeBenchCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := startFileUpstream(tree, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	env := &Env{Config: Config{Modgate: modgateBin}, Log: log, Dir: dir}
	mg, err := startSecureModgate(ctx, env, "modgate", up.URL, filepath.Join(dir, "cache"), certs, secureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mg.Stop() })
	ng, err := startNginx(ctx, nginxBin, filepath.Join(dir, "nginx"), tree, certs.CertFile, certs.KeyFile, false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ng.Stop() })
	all := append(append([]string{}, small...), zips...)
	client := certs.httpsClient(4)
	for _, base := range []string{mg.URL, ng.URL} {
		if err := fetchAll(ctx, client, base, "", all); err != nil {
			t.Fatalf("%s: %v", base, err)
		}
	}
	before := up.Requests()

	for _, tc := range []struct {
		name    string
		paths   []string
		wantErr string
	}{
		{name: "ok/every-object", paths: all},
		{name: "fail/missing-path", paths: []string{"/example.com/a/@v/v9.9.9.info"}, wantErr: "non-2xx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			script, err := writeWrkScriptNamed(dir, tc.name, tc.paths, "")
			if err != nil {
				t.Fatal(err)
			}
			load := wrkLoad{Bin: wrkBin, Threads: 1, Connections: 4, Duration: time.Second, Script: script}
			for _, base := range []string{mg.URL, ng.URL} {
				r, err := load.run(ctx, base)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("%s: err = %v, want one containing %q", base, err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", base, err)
				}
				if r.Requests < 10 || r.ReqPerSec <= 0 || r.Bytes == 0 || r.P99 < r.P50 {
					t.Errorf("%s: implausible wrk result %+v", base, r)
				}
			}
			if n := up.Requests() - before; n > 0 {
				t.Errorf("%d requests reached the upstream during warm load, want 0", n)
			}
		})
	}
}

// TestWarmLoadH2 drives the HTTP/2 comparison's pieces: Go's bare file server
// (built from internal/bench/cmd/gofileserver), nginx with HTTP/2 and modgate,
// each loaded by h2load (installed when missing), which fails unless the server
// negotiates h2. A path no server has must fail the run.
func TestWarmLoadH2(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	log := slog.New(slog.DiscardHandler)
	h2Bin, err := ensureTool(ctx, log, "h2load", "nghttp2-client")
	if err != nil {
		t.Fatal(err)
	}
	nginxBin, err := ensureTool(ctx, log, "nginx", "nginx")
	if err != nil {
		t.Fatal(err)
	}
	tree, _ := makeTree(t)
	small, _, _, err := treeObjects(tree)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certs, err := writeBenchCerts(dir)
	if err != nil {
		t.Fatal(err)
	}
	up, err := startFileUpstream(tree, 0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { up.Close() })
	env := &Env{Config: Config{Modgate: modgateBin}, Log: log, Dir: dir}
	mg, err := startSecureModgate(ctx, env, "modgate", up.URL, filepath.Join(dir, "cache"), certs, secureOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { mg.Stop() })
	ng, err := startNginx(ctx, nginxBin, filepath.Join(dir, "nginx"), tree, certs.CertFile, certs.KeyFile, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ng.Stop() })
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatal(err)
	}
	fsBin, err := buildGoFileServer(ctx, goBin, dir)
	if err != nil {
		t.Fatal(err)
	}
	gofs, err := startGoFileServer(ctx, fsBin, tree, certs.CertFile, certs.KeyFile, filepath.Join(dir, "gofileserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { gofs.Stop() })
	if err := fetchAll(ctx, certs.httpsClient(4), mg.URL, "", small); err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		name    string
		paths   []string
		wantErr string
	}{
		{name: "ok/every-object", paths: small},
		{name: "fail/missing-path", paths: []string{"/example.com/a/@v/v9.9.9.info"}, wantErr: "non-2xx"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, base := range []string{mg.URL, ng.URL, gofs.URL} {
				f, err := writeURIFile(t.TempDir(), "x", base, tc.paths)
				if err != nil {
					t.Fatal(err)
				}
				load := h2Load{Bin: h2Bin, Threads: 1, Clients: 2, Streams: 4, Duration: time.Second, URIFile: f}
				r, err := load.run(ctx)
				if tc.wantErr != "" {
					if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
						t.Errorf("%s: err = %v, want one containing %q", base, err, tc.wantErr)
					}
					continue
				}
				if err != nil {
					t.Fatalf("%s: %v", base, err)
				}
				if r.Requests < 10 || r.ReqPerSec <= 0 || r.Bytes == 0 || r.Mean <= 0 {
					t.Errorf("%s: implausible h2load result %+v", base, r)
				}
			}
		})
	}
}

// On a loaded machine the 1 s warm-up run can end before a single TLS
// handshake does: zero requests is then no error, but it is for a timed run.
func TestWarmUpToleratesNoAnswer(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	wrkBin, err := ensureTool(ctx, slog.New(slog.DiscardHandler), "wrk", "wrk")
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan net.Conn, 64)
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-accepted:
				c.Close()
			default:
				return
			}
		}
	})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			select {
			case accepted <- c: // held open, silent, until the test ends
			default:
				c.Close()
			}
		}
	}()
	script, err := writeWrkScriptNamed(t.TempDir(), "silent", []string{"/x"}, "")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		warmUp  bool
		wantErr bool
	}{
		{"ok/warm-up", true, false},
		{"fail/timed-run", false, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			load := wrkLoad{Bin: wrkBin, Threads: 1, Connections: 2, Duration: time.Second, Script: script, WarmUp: tc.warmUp}
			r, err := load.run(ctx, "https://"+ln.Addr().String())
			if (err != nil) != tc.wantErr {
				t.Errorf("run = %+v, %v; want error %v", r, err, tc.wantErr)
			}
		})
	}
}
