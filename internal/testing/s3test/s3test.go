// Package s3test runs a real S3 server (MinIO) for tests: it finds or builds the
// minio binary once per machine and starts `minio server` on a loopback port with a
// temporary data directory.
//
// The binary is built with `go install github.com/minio/minio@MinIOVersion` from the
// Go module proxy, the only registry CI can reach, into
// $XDG_CACHE_HOME/modgate/bin/minio-<version>/ (MODGATE_MINIO_BIN overrides). A
// lock file makes concurrent test processes wait for one build instead of starting
// several. .ci/test builds it up front (go run ./internal/testing/s3test/ensureminio) so the
// several minutes it takes on a fresh machine do not count against a test timeout.
package s3test

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
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

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"

	"github.com/modgate/modgate/internal/certgen"
)

// MinIOVersion is the MinIO server built for tests: the last commit on the module
// proxy (MinIO tags releases RELEASE.<date>, which are not module versions, so a
// pseudo-version pins it). It builds with Go 1.26.
const MinIOVersion = "v0.0.0-20260212201848-7aac2a2c5b7c"

// EnsureBinary returns the path of the minio binary, building it if this machine
// has none yet. Concurrent callers, in any process, wait for a single build.
func EnsureBinary(ctx context.Context) (string, error) {
	if p := os.Getenv("MODGATE_MINIO_BIN"); p != "" {
		return p, nil
	}
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	dir := filepath.Join(cache, "modgate", "bin", "minio-"+MinIOVersion)
	bin := filepath.Join(dir, "minio")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("s3test: locking %s: %w", lock.Name(), err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil // built by whoever held the lock before us
	}
	// Build into a side directory and rename, so a killed build never leaves a
	// half-written binary under the name others look for.
	tmp, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	defer os.RemoveAll(tmp)
	// Say so: the build is silent and takes minutes on a fresh machine.
	fmt.Fprintf(os.Stderr, "s3test: building the MinIO server %s from the Go module proxy into %s (once per machine; 3-10 minutes)\n", MinIOVersion, dir)
	cmd := exec.CommandContext(ctx, "go", "install", "github.com/minio/minio@"+MinIOVersion)
	cmd.Dir = tmp // outside any module, so the repository's go.mod plays no part
	cmd.Env = append(os.Environ(), "GOBIN="+tmp, "CGO_ENABLED=0", "GOFLAGS=")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("s3test: building minio %s: %v\n%s", MinIOVersion, err, out)
	}
	if err := os.Rename(filepath.Join(tmp, "minio"), bin); err != nil {
		return "", fmt.Errorf("s3test: %w", err)
	}
	return bin, nil
}

// Server is a running MinIO.
type Server struct {
	// Endpoint is host:port on loopback: plain HTTP, or HTTPS when CAFile is set.
	Endpoint  string
	AccessKey string
	SecretKey string
	// CAFile is the PEM CA that issued the server's certificate (StartTLS only).
	CAFile string
	Client *minio.Client

	cmd  *exec.Cmd
	done chan struct{}
	logs *logBuffer
	mu   sync.Mutex
	n    int
}

// Start runs a MinIO server speaking plain HTTP for the test and stops it when the
// test ends.
func Start(t testing.TB) *Server { t.Helper(); return startServer(t, false) }

// StartTLS is Start over HTTPS, with a certificate for 127.0.0.1 from a fresh CA
// (Server.CAFile).
func StartTLS(t testing.TB) *Server { t.Helper(); return startServer(t, true) }

func startServer(t testing.TB, useTLS bool) *Server {
	t.Helper()
	bin, err := EnsureBinary(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var lastErr error
	for range 3 { // the free port may be taken between probing and binding
		s, err := start(t, bin, useTLS)
		if err == nil {
			return s
		}
		lastErr = err
	}
	t.Fatal(lastErr)
	return nil
}

func start(t testing.TB, bin string, useTLS bool) (*Server, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	addr := ln.Addr().String()
	ln.Close()
	s := &Server{
		Endpoint:  addr,
		AccessKey: "modgate-test",
		SecretKey: randomHex(16),
		done:      make(chan struct{}),
		logs:      &logBuffer{},
	}
	args := []string{"server", "--quiet", "--address", addr}
	httpClient := http.DefaultClient
	scheme := "http"
	var transport http.RoundTripper
	if useTLS {
		certsDir, pool, err := s.issueCertificates(t)
		if err != nil {
			return nil, err
		}
		args = append(args, "--certs-dir", certsDir)
		tr := http.DefaultTransport.(*http.Transport).Clone()
		tr.TLSClientConfig = &tls.Config{RootCAs: pool}
		transport = tr
		httpClient = &http.Client{Transport: tr}
		scheme = "https"
	}
	s.cmd = exec.Command(bin, append(args, t.TempDir())...)
	s.cmd.Env = append(os.Environ(),
		"MINIO_ROOT_USER="+s.AccessKey,
		"MINIO_ROOT_PASSWORD="+s.SecretKey,
		"MINIO_BROWSER=off", // no console, so no second port
		"MINIO_UPDATE=off",
	)
	s.cmd.Stdout = s.logs
	s.cmd.Stderr = s.logs
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("s3test: starting minio: %w", err)
	}
	go func() { s.cmd.Wait(); close(s.done) }()
	t.Cleanup(s.stop)

	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := httpClient.Get(scheme + "://" + addr + "/minio/health/live")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		select {
		case <-s.done:
			return nil, fmt.Errorf("s3test: minio exited during start-up:\n%s", s.logs.String())
		default:
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("s3test: minio did not become healthy:\n%s", s.logs.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	s.Client, err = minio.New(addr, &minio.Options{
		Creds:        credentials.NewStaticV4(s.AccessKey, s.SecretKey, ""),
		BucketLookup: minio.BucketLookupPath,
		Secure:       useTLS,
		Transport:    transport,
	})
	if err != nil {
		return nil, fmt.Errorf("s3test: %w", err)
	}
	return s, nil
}

// issueCertificates writes a server certificate for 127.0.0.1 where minio's
// --certs-dir expects it, and the CA to s.CAFile.
func (s *Server) issueCertificates(t testing.TB) (string, *x509.CertPool, error) {
	ca, err := certgen.NewCA("s3test CA")
	if err != nil {
		return "", nil, err
	}
	leaf, err := ca.IssueServer([]string{"127.0.0.1"})
	if err != nil {
		return "", nil, err
	}
	dir := t.TempDir()
	s.CAFile = filepath.Join(dir, "ca.pem")
	certsDir := filepath.Join(dir, "certs")
	for name, data := range map[string][]byte{
		s.CAFile:                               ca.CertPEM,
		filepath.Join(certsDir, "public.crt"):  leaf.CertPEM,
		filepath.Join(certsDir, "private.key"): leaf.KeyPEM,
	} {
		if err := os.MkdirAll(filepath.Dir(name), 0o700); err != nil {
			return "", nil, err
		}
		if err := os.WriteFile(name, data, 0o600); err != nil {
			return "", nil, err
		}
	}
	return certsDir, ca.Pool(), nil
}

// NewBucket creates an empty bucket and returns its name.
func (s *Server) NewBucket(t testing.TB) string {
	t.Helper()
	s.mu.Lock()
	s.n++
	name := fmt.Sprintf("test-%d-%s", s.n, randomHex(4))
	s.mu.Unlock()
	if err := s.Client.MakeBucket(context.Background(), name, minio.MakeBucketOptions{}); err != nil {
		t.Fatalf("s3test: creating bucket: %v", err)
	}
	return name
}

// Logs returns what MinIO printed.
func (s *Server) Logs() string { return s.logs.String() }

func (s *Server) stop() {
	select {
	case <-s.done:
		return
	default:
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(5 * time.Second):
		s.cmd.Process.Kill()
		<-s.done
	}
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}

type logBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.b.Len() > 1<<20 {
		return len(p), nil
	}
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}
