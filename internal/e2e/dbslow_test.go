package e2e

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/config"
	"github.com/modgate/modgate/internal/publish"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/proxytest"
)

// PostgreSQL slow, not down: another connection holds ACCESS EXCLUSIVE locks on
// the audit and publish tables for some seconds, so every statement touching
// them waits. Warm downloads through the go command keep succeeding (they need
// no database), the audit trail records every one of them once the locks go
// (the spool absorbs the wait), and a publish during the wait either succeeds
// completely or fails with a one-line 503/504 leaving nothing half-stored.
func TestPostgresSlowDuringRequestsAndPublish(t *testing.T) {
	env := startPublishEnv(t)
	ctx := context.Background()
	goAs := func(t *testing.T) *gotest.Go {
		g := gotest.New(t, "GOPROXY="+env.url, "GONOSUMDB=corp.test", "GOSUMDB=off", "SSL_CERT_FILE="+env.caFile)
		writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(env.url, env.token("bob", "platform")))
		return g
	}
	hello := proxytest.HelloPath + "@v1.0.0"
	// This environment's policy has the cool-down on, which counts from modgate's
	// first sight of a version; the test is about a slow database, not the
	// cool-down, so the fixture version was first seen long ago.
	if _, err := env.pool.Exec(ctx, `INSERT INTO version_first_seen (module, version, first_seen) VALUES ($1, 'v1.0.0', now() - interval '1 year')`, proxytest.HelloPath); err != nil {
		t.Fatal(err)
	}
	// Warm modgate's cache.
	if _, stderr, err := goAs(t).Run("", "mod", "download", hello); err != nil {
		t.Fatalf("warm-up download: %v\n%s", err, stderr)
	}

	conn, err := env.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, `LOCK TABLE audit_events, published_versions IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	// The locks are held until the downloads below are done and at least
	// minHold has passed, so all of them run while PostgreSQL is slow.
	const minHold = 4 * time.Second
	downloadsDone := make(chan struct{})
	released := make(chan struct{})
	start := time.Now()
	go func() {
		<-downloadsDone
		time.Sleep(time.Until(start.Add(minHold)))
		tx.Rollback(ctx)
		close(released)
	}()

	// A publish while the tables are locked.
	const mod = "corp.test/slow"
	type result struct {
		status int
		body   string
	}
	pub := make(chan result, 1)
	go func() {
		status, body := env.put(t, env.token("alice", "platform"), mod, "v1.0.0", moduleZip(t, mod, "v1.0.0", mod, "slow.go"))
		pub <- result{status, body}
	}()

	// Warm downloads meanwhile: each a fresh go command (empty module cache).
	const downloads = 3
	for i := range downloads {
		select {
		case r := <-pub:
			t.Fatalf("publish answered %d %q while its table was still locked", r.status, r.body)
		default:
		}
		if _, stderr, err := goAs(t).Run("", "mod", "download", hello); err != nil {
			t.Fatalf("warm download %d while PostgreSQL is slow: %v\n%s", i, err, stderr)
		}
	}
	close(downloadsDone)
	<-released
	var r result
	select {
	case r = <-pub:
		if r.status == 201 && time.Since(start) < minHold {
			t.Fatalf("publish finished in %v, before the locks went: it never waited on PostgreSQL", time.Since(start))
		}
	case <-time.After(60 * time.Second):
		t.Fatal("publish did not answer within 60s of the database recovering")
	}
	rows := env.rows(t, mod)
	var stored, scratch []string
	for _, o := range env.objects(t) {
		switch {
		case strings.HasPrefix(o, ".tmp/"):
			scratch = append(scratch, o)
		case strings.Contains(o, "corp.test/slow"):
			stored = append(stored, o)
		}
	}
	switch r.status {
	case 201:
		if rows != 1 || len(stored) == 0 {
			t.Errorf("publish 201 but rows=%d objects=%v", rows, stored)
		}
	case 503, 504:
		if strings.Count(strings.TrimSpace(r.body), "\n") != 0 {
			t.Errorf("publish refusal is not one line: %q", r.body)
		}
		if rows != 0 || len(stored) != 0 {
			t.Errorf("publish %d left rows=%d objects=%v", r.status, rows, stored)
		}
	default:
		t.Errorf("publish during slowness: %d %q, want 201 or a one-line 503/504", r.status, r.body)
	}
	if len(scratch) != 0 {
		t.Errorf("scratch files left: %v", scratch)
	}
	t.Logf("publish during slowness: %d %q", r.status, strings.TrimSpace(r.body))

	// Every zip download is in the audit trail: the warm-up and the ones during
	// the slowness.
	want := downloads + 1
	where := "action = 'zip' AND module = '" + proxytest.HelloPath + "'"
	deadline := time.Now().Add(60 * time.Second)
	for countRows(t, env.pool, where) < want && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := countRows(t, env.pool, where); got != want {
		t.Errorf("audit rows for the zip downloads = %d, want %d", got, want)
	}
}

// A publish whose client gives up while PostgreSQL is slow (its table locked)
// is never half-stored: it completes whole (row and both objects) or leaves
// nothing, no scratch file either way, and publishing it again afterwards
// answers accordingly (200 identical or 201).
func TestPostgresSlowPublishAbandoned(t *testing.T) {
	env := startPublishEnv(t)
	ctx := context.Background()
	conn, err := env.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE published_versions IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const mod = "corp.test/abandoned"
	zipBytes := moduleZip(t, mod, "v1.0.0", mod, "a.go")
	p, err := publish.APIPath(mod, "v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	reqCtx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(reqCtx, http.MethodPut, env.url+p, bytes.NewReader(zipBytes))
	req.Header.Set("Authorization", "Bearer "+env.token("alice", "platform"))
	if resp, err := env.http.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("publish answered %d while its table was locked", resp.StatusCode)
	}
	// Give modgate time to notice the client left, then let PostgreSQL go.
	time.Sleep(time.Second)
	tx.Rollback(ctx)
	time.Sleep(time.Second)
	// Either the publish completed whole after all (row and both objects) or
	// it left nothing; never a scratch file.
	var stored []string
	deadline := time.Now().Add(10 * time.Second)
	for {
		rows := env.rows(t, mod)
		stored = stored[:0]
		for _, o := range env.objects(t) {
			switch {
			case strings.HasPrefix(o, ".tmp/"):
				t.Errorf("abandoned publish left scratch file %s", o)
			case strings.Contains(o, "abandoned"):
				stored = append(stored, o)
			}
		}
		if (rows == 1 && len(stored) == 2) || (rows == 0 && len(stored) == 0) {
			t.Logf("abandoned publish: rows=%d objects=%v", rows, stored)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("abandoned publish half-stored: rows=%d objects=%v", rows, stored)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// Publishing it again: 201 if the first left nothing, 200 (identical) if it
	// completed.
	status, body := env.put(t, env.token("alice", "platform"), mod, "v1.0.0", zipBytes)
	if want := map[bool]int{true: 201, false: 200}[len(stored) == 0]; status != want {
		t.Errorf("publish after the database recovered: %d %q, want %d", status, body, want)
	}
	if env.rows(t, mod) != 1 {
		t.Errorf("no row after the repeated publish")
	}
}

// PostgreSQL slow with database.statement_timeout set: a publish while its
// table is locked is cancelled by PostgreSQL after the timeout and answers 503
// with one line saying so, stores nothing (no row, no object, no scratch file),
// and the same publish succeeds once the lock goes. The audit trail, locked
// too, records both attempts afterwards: the audit writer's connections have no
// statement timeout and wait.
func TestPostgresSlowPublishTimesOut(t *testing.T) {
	const timeout = time.Second
	env := startPublishEnv(t, func(c *config.Config) { c.Database.StatementTimeout = config.Duration(timeout) })
	ctx := context.Background()
	conn, err := env.pool.Acquire(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Release()
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx)
	if _, err := tx.Exec(ctx, `LOCK TABLE audit_events, published_versions IN ACCESS EXCLUSIVE MODE`); err != nil {
		t.Fatal(err)
	}
	const mod = "corp.test/timeout"
	zipBytes := moduleZip(t, mod, "v1.0.0", mod, "t.go")
	start := time.Now()
	status, body := env.put(t, env.token("alice", "platform"), mod, "v1.0.0", zipBytes)
	took := time.Since(start)
	want := "cannot publish corp.test/timeout@v1.0.0 now (nothing was stored): modgate's database did not answer in time; try again\n"
	if status != http.StatusServiceUnavailable || body != want {
		t.Fatalf("publish with its table locked: %d %q, want 503 %q", status, body, want)
	}
	if took < timeout || took > 15*timeout {
		t.Errorf("publish answered after %v; want about the statement timeout, %v", took, timeout)
	}
	t.Logf("publish with its table locked: %d %q after %v", status, strings.TrimSpace(body), took)
	for _, o := range env.objects(t) {
		if strings.HasPrefix(o, ".tmp/") || strings.Contains(o, "timeout") {
			t.Errorf("timed-out publish left %s", o)
		}
	}

	if err := tx.Rollback(ctx); err != nil {
		t.Fatal(err)
	}
	if n := env.rows(t, mod); n != 0 {
		t.Fatalf("timed-out publish left %d rows", n)
	}
	if status, body := env.put(t, env.token("alice", "platform"), mod, "v1.0.0", zipBytes); status != http.StatusCreated {
		t.Fatalf("publish after the lock went: %d %q, want 201", status, body)
	}
	if n := env.rows(t, mod); n != 1 {
		t.Errorf("rows after the publish = %d, want 1", n)
	}
	where := "action = 'publish' AND module = '" + mod + "'"
	deadline := time.Now().Add(60 * time.Second)
	for countRows(t, env.pool, where) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	for _, st := range []int{503, 201} {
		if n := countRows(t, env.pool, fmt.Sprintf("%s AND status = %d", where, st)); n != 1 {
			t.Errorf("audit rows of the publish answered %d = %d, want 1", st, n)
		}
	}
}
