package e2e

import (
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/testing/sumdbtest"
	"github.com/modgate/modgate/internal/tokens"
)

// fastTimeouts makes upstream stalls surface in tests within a second.
func fastTimeouts(c *config.Config) {
	c.Upstream.ConnectTimeout = config.Duration(300 * time.Millisecond)
	c.Upstream.HeaderTimeout = config.Duration(300 * time.Millisecond)
	c.Upstream.BodyIdleTimeout = config.Duration(300 * time.Millisecond)
	c.Upstream.Retries = 1
}

// deadListener returns the address of a port nothing listens on.
func deadAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

// silentTLSAddr accepts TCP connections and never answers, so a TLS handshake
// with it hangs: a connect (dial + handshake) timeout.
func silentTLSAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { close(done); ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() { <-done; c.Close() }()
		}
	}()
	return ln.Addr().String()
}

// Upstream faults: whatever the mirror does, modgate answers with a clear status
// and one-line reason, never serves or caches a corrupt object, records the
// failure in the audit trail, and serves the genuine bytes once the mirror heals.
func TestUpstreamFaults(t *testing.T) {
	t.Parallel()
	hello := helloModules(t)
	var v110 proxytest.Module
	for _, m := range hello {
		if m.Version == "v1.1.0" {
			v110 = m
		}
	}
	genuineZip, err := proxytest.Zip(v110)
	if err != nil {
		t.Fatal(err)
	}
	zipPath := proxytest.ZipPath(proxytest.HelloPath, "v1.1.0")
	modPath := proxytest.ModPath(proxytest.HelloPath, "v1.1.0")
	infoPath := proxytest.InfoPath(proxytest.HelloPath, "v1.1.0")

	tests := []struct {
		name  string
		path  string
		fault proxytest.Fault
		// upstream replaces the fixture's URL (a dead or silent address).
		upstream   func(t *testing.T) string
		wantStatus int    // -1: the status line was 200 and the transfer was aborted
		wantReason string // in the body (or the transfer error)
		outcome    audit.Outcome
	}{
		{name: "fail/connection-refused", path: zipPath,
			upstream:   func(t *testing.T) string { return "http://" + deadAddr(t) },
			wantStatus: 502, wantReason: "upstream mirror unreachable", outcome: audit.OutcomeError},
		{name: "fail/connect-timeout", path: zipPath,
			upstream:   func(t *testing.T) string { return "https://" + silentTLSAddr(t) },
			wantStatus: 504, wantReason: "upstream mirror timed out", outcome: audit.OutcomeError},
		{name: "fail/header-timeout", path: zipPath, fault: proxytest.Fault{Delay: 3 * time.Second},
			wantStatus: 504, wantReason: "upstream mirror timed out", outcome: audit.OutcomeError},
		{name: "fail/body-stall", path: zipPath, fault: proxytest.Fault{DripBytes: 16, DripInterval: 2 * time.Second},
			wantStatus: 504, wantReason: "upstream mirror stalled mid-transfer", outcome: audit.OutcomeError},
		{name: "ok/slow-drip-within-idle-timeout", path: zipPath, fault: proxytest.Fault{DripBytes: 128, DripInterval: 5 * time.Millisecond},
			wantStatus: 200},
		{name: "fail/reset-mid-body", path: zipPath, fault: proxytest.Fault{Reset: true, ResetAfter: 200},
			wantStatus: 502, wantReason: "upstream mirror transfer failed", outcome: audit.OutcomeError},
		{name: "fail/truncated-with-length", path: zipPath, fault: proxytest.Fault{Truncate: true, TruncateAfter: 200, KeepLength: true},
			wantStatus: 502, wantReason: "upstream mirror transfer failed", outcome: audit.OutcomeError},
		{name: "fail/truncated-zip-without-length", path: zipPath, fault: proxytest.Fault{Truncate: true, TruncateAfter: 200},
			wantStatus: 502, wantReason: "upstream sent a corrupt module zip", outcome: audit.OutcomeError},
		{name: "fail/truncated-mod-without-length", path: modPath, fault: proxytest.Fault{Truncate: true, TruncateAfter: 10},
			wantStatus: 502, wantReason: "checksum mismatch for mod.test/hello@v1.1.0/go.mod", outcome: audit.OutcomeIntegrityFailure},
		{name: "fail/altered-zip-byte", path: zipPath, fault: proxytest.Fault{Corrupt: true, CorruptOffset: 60},
			wantStatus: 502, wantReason: "upstream sent a corrupt module zip for mod.test/hello@v1.1.0", outcome: audit.OutcomeIntegrityFailure},
		{name: "fail/wrong-info-version", path: infoPath, fault: proxytest.Fault{InfoVersion: "v9.9.9"},
			wantStatus: 502, wantReason: `upstream .info names version "v9.9.9", not the requested "v1.1.0"`, outcome: audit.OutcomeError},
		{name: "fail/5xx-storm", path: zipPath, fault: proxytest.Fault{Status: 503},
			wantStatus: 502, wantReason: "upstream mirror answered 503 Service Unavailable", outcome: audit.OutcomeError},
		{name: "ok/5xx-burst-within-retries", path: zipPath, fault: proxytest.Fault{Status: 500, Times: 1},
			wantStatus: 200},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			up := proxytest.NewServer(t, hello...)
			db := sumdbtest.Mount(t, up, testSumDB)
			url := up.URL
			if tt.upstream != nil {
				url = tt.upstream(t)
			}
			up.SetFault(tt.path, tt.fault)
			mg := startVerifyingProxy(t, url, db.Key(), t.TempDir(), fastTimeouts)

			status, body := get(t, mg.URL+tt.path)
			if status != tt.wantStatus || !strings.Contains(body, tt.wantReason) {
				t.Fatalf("GET %s = %d %q, want %d with %q", tt.path, status, body, tt.wantStatus, tt.wantReason)
			}
			if tt.wantStatus == 200 {
				if tt.path == zipPath && body != string(genuineZip) {
					t.Fatal("served bytes differ from the genuine zip")
				}
				return
			}
			if strings.Count(strings.TrimSpace(body), "\n") != 0 {
				t.Errorf("reason is not one line: %q", body)
			}
			if cachedObject(mg.CacheDir, tt.path) {
				t.Error("a failed transfer was cached")
			}
			kind := audit.Action(strings.TrimPrefix(tt.path[strings.LastIndex(tt.path, "."):], "."))
			evs := mg.Audit.find(kind, proxytest.HelloPath, "v1.1.0")
			if len(evs) != 1 || evs[0].Outcome != tt.outcome || evs[0].Reason == "" {
				t.Errorf("audit events %+v, want one with outcome %q and a reason", evs, tt.outcome)
			}
			if tt.upstream != nil {
				return // nothing to heal
			}
			// Healed: the genuine object, fetched again (nothing bad was remembered).
			up.ClearFaults()
			status, body = get(t, mg.URL+tt.path)
			if status != 200 {
				t.Fatalf("after healing: %d %q", status, body)
			}
			if tt.path == zipPath && body != string(genuineZip) {
				t.Error("after healing: served bytes differ from the genuine zip")
			}
		})
	}
}

// mountTmpfs mounts a size-limited tmpfs (we run as root; see the package doc).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("mount tmpfs (these tests need root to simulate a full or read-only disk): %v\n%s", err, out)
	}
	t.Cleanup(func() { exec.Command("umount", "-l", dir).Run() })
	return dir
}

// Storage faults: a full or read-only cache volume is a 503 with a reason an
// operator recognises; objects already cached keep being served, and nothing
// partial is left behind.
func TestStorageFaults(t *testing.T) {
	t.Parallel()
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	db := sumdbtest.Mount(t, upstream, testSumDB)
	small := proxytest.ZipPath(proxytest.HelloPath, "v1.0.0")
	large := proxytest.ZipPath(proxytest.LargePath, "v1.0.0") // 4 MiB

	t.Run("fail/disk-full", func(t *testing.T) {
		t.Parallel()
		dir := mountTmpfs(t, "1m")
		mg := startVerifyingProxy(t, upstream.URL, db.Key(), dir)
		status, body := get(t, mg.URL+large)
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "cache storage is full") {
			t.Fatalf("GET large on a full disk = %d %q, want 503 storage full", status, body)
		}
		if cachedObject(dir, large) {
			t.Error("partial object cached")
		}
		// The failed fill's scratch file was removed: small objects still fit.
		if status, body := get(t, mg.URL+small); status != 200 {
			t.Fatalf("GET small after the failure = %d %q", status, body)
		}
	})
	t.Run("fail/permission-denied", func(t *testing.T) {
		t.Parallel()
		// Root ignores file modes; the immutable attribute (chattr +i) refuses
		// even root with EPERM, as a wrongly owned volume refuses modgate's user.
		dir := t.TempDir()
		mg := startVerifyingProxy(t, upstream.URL, db.Key(), dir)
		if status, body := get(t, mg.URL+small); status != 200 {
			t.Fatalf("warm-up = %d %q", status, body)
		}
		scratch := filepath.Join(dir, ".tmp")
		if out, err := exec.Command("chattr", "+i", scratch).CombinedOutput(); err != nil {
			t.Fatalf("chattr +i: %v\n%s", err, out)
		}
		t.Cleanup(func() { exec.Command("chattr", "-i", scratch).Run() })
		status, body := get(t, mg.URL+proxytest.ZipPath(proxytest.HelloPath, "v1.1.0"))
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "cache storage is not writable") {
			t.Fatalf("GET with an unwritable cache = %d %q, want 503 not writable", status, body)
		}
		if status, _ := get(t, mg.URL+small); status != 200 {
			t.Errorf("cached object not served: %d", status)
		}
	})
	t.Run("fail/read-only", func(t *testing.T) {
		t.Parallel()
		dir := mountTmpfs(t, "16m")
		mg := startVerifyingProxy(t, upstream.URL, db.Key(), dir)
		if status, body := get(t, mg.URL+small); status != 200 {
			t.Fatalf("warm-up = %d %q", status, body)
		}
		if out, err := exec.Command("mount", "-o", "remount,ro", dir).CombinedOutput(); err != nil {
			t.Fatalf("remount ro: %v\n%s", err, out)
		}
		status, body := get(t, mg.URL+proxytest.ZipPath(proxytest.HelloPath, "v1.1.0"))
		if status != http.StatusServiceUnavailable || !strings.Contains(body, "cache storage is not writable") {
			t.Fatalf("GET on a read-only cache = %d %q, want 503 not writable", status, body)
		}
		if status, _ := get(t, mg.URL+small); status != 200 {
			t.Errorf("cached object not served from a read-only cache: %d", status)
		}
	})
}

// PostgreSQL down: API tokens cannot be checked, which must read as a temporary
// outage (503), not as a wrong credential (401) that sends developers to rotate
// a good token; client certificates keep working and their events are spooled
// (TestAuditSurvivesPostgresOutage counts them after the restart).
func TestPostgresDownForTokens(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	cfg.TLS.ClientCAFile = p.CAFile
	url := startApp(t, cfg)

	pool := pgtest.Pool(t, dbURL)
	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := store.Create(context.Background(), tokens.CreateRequest{Subject: "ci", TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	path := url + "/" + proxytest.HelloPath + "/@v/v1.0.0.info"
	if code, body := getWithToken(t, p.CAFile, path, secret); code != 200 {
		t.Fatalf("token before the outage: %d %s", code, body)
	}
	pool.Close()
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cluster.Start() })

	// A token not seen before (so not in any cache) must be looked up.
	code, body := getWithToken(t, p.CAFile, path, secret[:len(secret)-2]+"zz")
	if code != http.StatusServiceUnavailable && code != http.StatusUnauthorized {
		t.Fatalf("unknown token while PostgreSQL is down: %d %s", code, body)
	}
	if code == http.StatusUnauthorized {
		t.Errorf("PostgreSQL down reads as a bad credential (401 %q); want 503", strings.TrimSpace(body))
	}
	certFile, keyFile := p.clientFiles(t, "builder")
	resp, err := clientWithCert(t, p.CAFile, certFile, keyFile).Get(path)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !bytes.Contains(b, []byte("v1.0.0")) {
		t.Errorf("client certificate while PostgreSQL is down: %d %s", resp.StatusCode, b)
	}
}
