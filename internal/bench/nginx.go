package bench

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"
)

// nginxProc is nginx (the Debian package) serving a GOPROXY tree as static files
// over TLS: the baseline a user would put in front of a module directory.
type nginxProc struct {
	URL  string
	dir  string
	cmd  *exec.Cmd
	done chan error
}

// startNginx serves root over HTTPS on a free loopback port with the given
// certificate, configured as a static file server should be for this load:
// sendfile, keep-alive without a per-connection request limit (Go's server has
// none either), and an access log on (modgate writes one line per request too).
// With http2 it offers HTTP/2 by ALPN as well (the h2 scenario).
func startNginx(ctx context.Context, bin, dir, root, certFile, keyFile string, http2 bool) (*nginxProc, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	for _, d := range []string{"body", "proxy", "fastcgi", "uwsgi", "scgi"} {
		if err := os.MkdirAll(filepath.Join(dir, "temp", d), 0o755); err != nil {
			return nil, fmt.Errorf("bench: %w", err)
		}
	}
	// The workers run as root because the tree lives in root's cache directory,
	// which the usual worker user cannot read.
	conf := fmt.Sprintf(`daemon off;
master_process on;
worker_processes auto;
user root;
pid %[1]s/nginx.pid;
error_log %[1]s/error.log warn;
events { worker_connections 4096; }
http {
    access_log %[1]s/access.log;
    client_body_temp_path %[1]s/temp/body;
    proxy_temp_path %[1]s/temp/proxy;
    fastcgi_temp_path %[1]s/temp/fastcgi;
    uwsgi_temp_path %[1]s/temp/uwsgi;
    scgi_temp_path %[1]s/temp/scgi;
    types { application/json info; text/plain mod; application/zip zip; }
    default_type application/octet-stream;
    sendfile on;
    tcp_nopush on;
    keepalive_timeout 120s;
    keepalive_requests 100000000;
    server {
        listen 127.0.0.1:%[2]d ssl%[6]s;
        http2 off;
        ssl_certificate %[3]s;
        ssl_certificate_key %[4]s;
        ssl_protocols TLSv1.2 TLSv1.3;
        root %[5]s;
        location / { try_files $uri =404; }
    }
}
`, dir, port, certFile, keyFile, root, map[bool]string{true: " http2"}[http2])
	// nginx 1.22 has no "http2" directive (HTTP/2 is a listen parameter there,
	// deprecated but still accepted by later versions); drop it.
	conf = strings.Replace(conf, "        http2 off;\n", "", 1)
	confPath := filepath.Join(dir, "nginx.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o644); err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	if out, err := exec.CommandContext(ctx, bin, "-t", "-q", "-p", dir, "-c", confPath).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("bench: nginx rejects its configuration: %w\n%s", err, out)
	}
	cmd := exec.Command(bin, "-p", dir, "-c", confPath)
	logf, err := os.Create(filepath.Join(dir, "nginx.stderr"))
	if err != nil {
		return nil, fmt.Errorf("bench: %w", err)
	}
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("bench: starting nginx: %w", err)
	}
	n := &nginxProc{URL: fmt.Sprintf("https://127.0.0.1:%d", port), dir: dir, cmd: cmd, done: make(chan error, 1)}
	go func() {
		n.done <- cmd.Wait()
		logf.Close()
	}()
	addr := fmt.Sprintf("127.0.0.1:%d", port)
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return n, nil
		}
		select {
		case err := <-n.done:
			return nil, fmt.Errorf("bench: nginx exited (%v):\n%s%s", err, tailFile(filepath.Join(dir, "nginx.stderr"), 2000), tailFile(filepath.Join(dir, "error.log"), 2000))
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			n.Stop()
			return nil, errors.New("bench: nginx did not listen within 15s")
		}
	}
}

// Pids returns nginx's processes (master and workers), for CPU accounting.
func (n *nginxProc) Pids() []int {
	pids := []int{n.cmd.Process.Pid}
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", n.cmd.Process.Pid, n.cmd.Process.Pid))
	if err == nil {
		for _, f := range strings.Fields(string(data)) {
			var p int
			if _, err := fmt.Sscanf(f, "%d", &p); err == nil {
				pids = append(pids, p)
			}
		}
	}
	return pids
}

// Stop shuts nginx down (SIGQUIT: graceful) and kills it if it lingers.
func (n *nginxProc) Stop() error {
	n.cmd.Process.Signal(syscall.SIGQUIT)
	select {
	case <-n.done:
		return nil
	case <-time.After(10 * time.Second):
		n.cmd.Process.Kill()
		<-n.done
		return errors.New("bench: nginx did not stop within 10s")
	}
}

// freePort returns a loopback TCP port that was free a moment ago.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, fmt.Errorf("bench: %w", err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
