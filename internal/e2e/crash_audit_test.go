package e2e

import (
	"archive/zip"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// PostgreSQL down, requests served, then SIGKILL: every event was fsync'd to the
// spool before its response completed, so a restart over the same spool, with
// PostgreSQL back, ships them all, exactly once.
func TestKilledAfterServingLosesNoAuditEvent(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	dir := t.TempDir()
	cfgFile := filepath.Join(dir, "modgate.yaml")
	writeFile(t, cfgFile, []byte(fmt.Sprintf("database:\n  url: %q\naudit:\n  spool_dir: %q\nsumdb:\n  verify: false\n", dbURL, filepath.Join(dir, "spool"))))
	args := []string{"--config", cfgFile, "--cache-dir", filepath.Join(dir, "cache"), "--upstream", upstream.URL, "--anonymous"}

	p := startModgate(t, args...)
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	const n = 40
	url := p.URL + proxytest.InfoPath(proxytest.HelloPath, "v1.0.0")
	for i := range n {
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("request %d: %d", i, resp.StatusCode)
		}
	}
	p.Kill()
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, dbURL)
	shippedBeforeKill := countRows(t, pool, "action = 'info'")

	startModgate(t, args...)
	deadline := time.Now().Add(30 * time.Second)
	for countRows(t, pool, "action = 'info'") < n && time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
	}
	got := countRows(t, pool, "action = 'info'")
	t.Logf("shipped before SIGKILL: %d of %d; after restart: %d", shippedBeforeKill, n, got)
	if got != n {
		t.Errorf("audit rows after SIGKILL and restart = %d, want %d", got, n)
	}
	if dups := countRows(t, pool, "event_id IN (SELECT event_id FROM audit_events GROUP BY event_id HAVING count(*) > 1)"); dups != 0 {
		t.Errorf("%d duplicated rows", dups)
	}
}

// SIGKILL in the middle of a publish upload: after the restart the version does
// not exist (no row, no served object, no leftover scratch file), the attempt is
// not mistaken for a conflicting publish, and publishing again succeeds.
func TestKilledDuringPublish(t *testing.T) {
	pool, dbURL := pgtest.NewPool(t)
	dir := t.TempDir()
	cacheDir := filepath.Join(dir, "cache")
	policyDir := copyPolicy(t, map[string]string{"data.yaml": publishPolicyData})
	cfgFile := filepath.Join(dir, "modgate.yaml")
	writeFile(t, cfgFile, []byte(fmt.Sprintf("database:\n  url: %q\naudit:\n  spool_dir: %q\nprivate:\n  patterns: corp.test\npolicy:\n  dir: %q\n",
		dbURL, filepath.Join(dir, "spool"), policyDir)))
	args := []string{"--config", cfgFile, "--cache-dir", cacheDir, "--upstream", "off"}

	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	secret, _, err := store.Create(context.Background(), tokens.CreateRequest{Subject: "release-bot", Teams: []string{"platform"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	const mod, ver = "corp.test/lib", "v1.0.0"
	var zbuf bytes.Buffer
	zw := zip.NewWriter(&zbuf)
	for name, body := range map[string][]byte{"go.mod": []byte("module corp.test/lib\n"), "lib.go": []byte("package lib\n"), "data.bin": bytes.Repeat([]byte("0123456789abcdef"), 1<<16)} {
		w, _ := zw.CreateHeader(&zip.FileHeader{Name: mod + "@" + ver + "/" + name, Method: zip.Store})
		w.Write(body)
	}
	zw.Close()
	zipData := zbuf.Bytes()
	apiPath, err := publish.APIPath(mod, ver)
	if err != nil {
		t.Fatal(err)
	}
	put := func(base string, body io.Reader) (int, string, error) {
		req, _ := http.NewRequest(http.MethodPut, base+apiPath, body)
		req.ContentLength = int64(len(zipData))
		req.Header.Set("Authorization", "Bearer "+secret)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, "", err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b), nil
	}

	p := startModgate(t, args...)
	pr, pw := io.Pipe()
	t.Cleanup(func() { pw.Close() })
	type result struct {
		code int
		body string
		err  error
	}
	done := make(chan result, 1)
	go func() { c, b, err := put(p.URL, pr); done <- result{c, b, err} }()
	wrote := make(chan error, 1)
	go func() { _, err := pw.Write(zipData[:len(zipData)/2]); wrote <- err }()
	select {
	case err := <-wrote:
		if err != nil {
			t.Fatal(err)
		}
	case r := <-done:
		t.Fatalf("upload answered before its body was read: %d %q %v", r.code, r.body, r.err)
	case <-time.After(10 * time.Second):
		t.Fatal("modgate did not read the upload")
	}
	time.Sleep(200 * time.Millisecond) // let modgate spool what it received
	p.Kill()
	pw.CloseWithError(io.ErrUnexpectedEOF) // the client's body writer is blocked on the pipe
	if r := <-done; r.err == nil && r.code < 300 {
		t.Fatalf("the interrupted upload reported %d %q", r.code, r.body)
	}

	p = startModgate(t, args...)
	if n := countPublished(t, pool, mod); n != 0 {
		t.Fatalf("%d published_versions rows after a killed upload", n)
	}
	if left, _ := filepath.Glob(filepath.Join(cacheDir, ".tmp", "*")); len(left) != 0 {
		t.Errorf("scratch files left after restart: %v", left)
	}
	code, body, err := put(p.URL, bytes.NewReader(zipData))
	if err != nil || code != http.StatusCreated {
		t.Fatalf("publish after restart: %d %q %v, want 201", code, body, err)
	}
	if n := countPublished(t, pool, mod); n != 1 {
		t.Errorf("%d rows after publishing, want 1", n)
	}
}

func countPublished(t *testing.T, pool *pgxpool.Pool, mod string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), `SELECT count(*) FROM published_versions WHERE module = $1`, mod).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}
