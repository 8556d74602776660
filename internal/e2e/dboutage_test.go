package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// graphModules returns n modules mod.test/graph/mNNN@v1.0.0 forming a graph:
// each requires the module at half its index, so the go command walks a tree
// of go.mod files before downloading the zips.
func graphModules(n int) []proxytest.Module {
	path := func(i int) string { return fmt.Sprintf("mod.test/graph/m%03d", i) }
	var ms []proxytest.Module
	for i := range n {
		gomod := "module " + path(i) + "\n\ngo 1.21\n"
		if i > 0 {
			gomod += "\nrequire " + path(i/2) + " v1.0.0\n"
		}
		ms = append(ms, proxytest.Module{
			Path:    path(i),
			Version: "v1.0.0",
			Files: map[string]string{
				"go.mod": gomod,
				"m.go":   fmt.Sprintf("package m%03d\n\nconst N = %d\n", i, i),
			},
		})
	}
	return ms
}

// readyzWatch polls /readyz of every replica until stopped and remembers what
// it saw.
type readyzWatch struct {
	mu       sync.Mutex
	failures []string        // non-200 answers
	degraded map[string]bool // replica URL → "database: degraded" seen
	stop     chan struct{}
	done     chan struct{}
}

func watchReadyz(t *testing.T, caFile string, urls ...string) *readyzWatch {
	w := &readyzWatch{degraded: map[string]bool{}, stop: make(chan struct{}), done: make(chan struct{})}
	client := clientTrusting(t, caFile)
	go func() {
		defer close(w.done)
		for {
			for _, u := range urls {
				resp, err := client.Get(u + "/readyz")
				if err != nil {
					w.record(fmt.Sprintf("%s: %v", u, err), u, "")
					continue
				}
				var b bytes.Buffer
				b.ReadFrom(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					w.record(fmt.Sprintf("%s: %d %s", u, resp.StatusCode, b.String()), u, b.String())
				} else {
					w.record("", u, b.String())
				}
			}
			select {
			case <-w.stop:
				return
			case <-time.After(100 * time.Millisecond):
			}
		}
	}()
	t.Cleanup(w.Stop)
	return w
}

func (w *readyzWatch) record(failure, url, body string) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if failure != "" {
		w.failures = append(w.failures, failure)
	}
	if strings.Contains(body, "database: degraded") {
		w.degraded[url] = true
	}
}

func (w *readyzWatch) Stop() {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
}

func (w *readyzWatch) sawDegraded(url string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.degraded[url]
}

// auditedRequestIDs returns the request ids of the requests a replica logged
// that belong in the audit trail (module protocol, publish).
func auditedRequestIDs(t *testing.T, logs string) []string {
	t.Helper()
	var ids []string
	sc := bufio.NewScanner(strings.NewReader(logs))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var line struct {
			Msg       string `json:"msg"`
			Endpoint  string `json:"endpoint"`
			RequestID string `json:"request_id"`
		}
		if json.Unmarshal(sc.Bytes(), &line) != nil || line.Msg != "request" {
			continue
		}
		switch line.Endpoint {
		case "list", "info", "mod", "zip", "latest", "module", "publish", "delete", "audit-read":
			ids = append(ids, line.RequestID)
		}
	}
	return ids
}

// The go command downloads a 120-module graph with an API token while the
// PostgreSQL behind two replicas is stopped and started again part-way. The
// download succeeds; /readyz stays 200 on both, reporting the database as
// degraded; a token revoked just before the outage is refused during it, and
// a publish gets its 503 and stores nothing; after recovery the audit trail
// holds exactly one row per request the replicas logged, `modgate audit
// verify` passes, and a token revoked then is refused by both replicas within
// a second.
func TestServesThroughPostgresOutage(t *testing.T) {
	const n = 120
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	modules := graphModules(n)
	upstream := proxytest.NewServer(t, modules...)
	p := newPKI(t)

	var logs [2]*safeBuffer
	var urls [2]string
	var cacheDirs [2]string
	for i := range 2 {
		cfg := tlsConfigFor(p, upstream.URL)
		cfg.Database.URL = dbURL
		cfg.Replica = fmt.Sprintf("replica-%d", i)
		cfg.Cache.Dir = t.TempDir()
		cfg.Private.Patterns = "corp.test"
		cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": publishPolicyData})
		logs[i] = &safeBuffer{}
		cacheDirs[i] = cfg.Cache.Dir
		urls[i] = startAppLogging(t, cfg, logs[i])
	}
	readyz := watchReadyz(t, p.CAFile, urls[:]...)

	pool := pgtest.Pool(t, dbURL)
	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	// The graph's versions are old news to modgate (first seen long ago), so
	// the policy's cool-down does not hold them.
	for _, m := range modules {
		if _, err := pool.Exec(ctx, `INSERT INTO version_first_seen (module, version, first_seen) VALUES ($1, $2, now() - interval '1 year')`, m.Path, m.Version); err != nil {
			t.Fatal(err)
		}
	}
	newToken := func(subject string) (string, tokens.Token) {
		secret, tok, err := store.Create(ctx, tokens.CreateRequest{Subject: subject, Teams: []string{"platform"}, TTL: time.Hour})
		if err != nil {
			t.Fatal(err)
		}
		return secret, tok
	}
	info := "/" + modules[0].Path + "/@v/v1.0.0.info"
	status := func(replica int, secret string) (int, string) {
		return getWithToken(t, p.CAFile, urls[replica]+info, secret)
	}
	ci, _ := newToken("ci-build")
	revokedBefore, revokedBeforeTok := newToken("ci-revoked-before")
	unseen, _ := newToken("ci-unseen") // never presented before the outage
	auditor, _, err := store.Create(ctx, tokens.CreateRequest{Subject: "ann", Teams: []string{"security-audit"}, TTL: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	auditEvents := urls[1] + "/api/v1/audit/events?limit=1"
	if code, body := getWithToken(t, p.CAFile, auditEvents, auditor); code != 200 {
		t.Fatalf("audit query before the outage: %d %s", code, body)
	}
	for i := range 2 {
		for _, s := range []string{ci, revokedBefore} {
			if code, body := status(i, s); code != 200 {
				t.Fatalf("replica %d before the outage: %d %s", i, code, body)
			}
		}
	}
	if _, err := store.Revoke(ctx, revokedBeforeTok.ID, "security"); err != nil {
		t.Fatal(err)
	}
	for i := range 2 {
		waitFor(t, 5*time.Second, "the revocation to reach a replica", func() bool {
			code, _ := status(i, revokedBefore)
			return code == http.StatusUnauthorized
		})
	}

	// The go command's session: a main module requiring the whole graph.
	g := gotest.New(t, "GOPROXY="+urls[0], "GONOSUMDB=mod.test", "GOFLAGS=-mod=mod", "SSL_CERT_FILE="+p.CAFile)
	writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(urls[0], ci))
	work := t.TempDir()
	var req strings.Builder
	for _, m := range modules {
		fmt.Fprintf(&req, "\t%s %s\n", m.Path, m.Version)
	}
	writeFile(t, filepath.Join(work, "go.mod"), []byte("module corp.test/app\n\ngo 1.21\n\nrequire (\n"+req.String()+")\n"))
	// One zip is held until PostgreSQL is back, so the download spans the
	// whole outage; every response is slowed during it, so the outage outlasts
	// the token cache's TTL while requests keep coming.
	held := upstream.Gate(proxytest.ZipPath(modules[n-1].Path, "v1.0.0"), 0)
	type result struct {
		stdout, stderr string
		err            error
	}
	downloaded := make(chan result, 1)
	go func() {
		stdout, stderr, err := g.Run(work, "mod", "download", "-json", "all")
		downloaded <- result{stdout, stderr, err}
	}()

	// Stop PostgreSQL once the download is well under way.
	waitFor(t, 2*time.Minute, "the download to get under way", func() bool { return len(upstream.Requests()) >= n/2 })
	if err := cluster.Stop(); err != nil {
		t.Fatal(err)
	}
	outage := time.Now()
	upstream.SetGlobalFault(proxytest.Fault{Delay: 50 * time.Millisecond})
	atOutage := len(upstream.Requests())
	t.Logf("PostgreSQL stopped after %d upstream requests", atOutage)

	for i := range 2 {
		waitFor(t, 30*time.Second, "readyz to report the database degraded", func() bool { return readyz.sawDegraded(urls[i]) })
		if code, body := status(i, revokedBefore); code == http.StatusOK {
			t.Errorf("replica %d accepted a token revoked before the outage: %s", i, body)
		}
		// A token no replica has confirmed cannot be checked: 503 with the reason.
		if code, body := status(i, unseen); code != http.StatusServiceUnavailable || !strings.Contains(body, "API token store unavailable") {
			t.Errorf("replica %d, unknown token during the outage: %d %q, want 503 naming the token store", i, code, body)
		}
	}
	// Publish needs the database: a 503 naming what could not be done, and
	// nothing stored.
	pe := &publishEnv{url: urls[1], cacheDir: cacheDirs[1], http: clientTrusting(t, p.CAFile)}
	code, body := pe.put(t, ci, "corp.test/outage", "v1.0.0", moduleZip(t, "corp.test/outage", "v1.0.0", "corp.test/outage", "a.go"))
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot publish corp.test/outage@v1.0.0 now") || !strings.Contains(body, "database is unreachable") {
		t.Errorf("publish during the outage: %d %q, want 503 saying the database is unreachable", code, body)
	}
	if objs := pe.objects(t); len(objs) != 0 {
		t.Errorf("publish during the outage left objects: %v", objs)
	}
	if code, body := getWithToken(t, p.CAFile, auditEvents, auditor); code != http.StatusServiceUnavailable || !strings.Contains(body, "cannot query the audit trail now") {
		t.Errorf("audit query during the outage: %d %q, want 503 saying why", code, body)
	}
	// Past the token cache's TTL: what the go command gets now rests on
	// stale-if-error.
	if wait := tokens.DefaultCacheTTL + time.Second - time.Since(outage); wait > 0 {
		time.Sleep(wait)
	}
	waitFor(t, 2*time.Minute, "the download to go on during the outage", func() bool {
		return len(upstream.Requests()) >= atOutage+n/2
	})
	select {
	case r := <-downloaded:
		t.Fatalf("download finished while a zip was held: %v\n%s", r.err, r.stderr)
	default:
	}
	duringOutage := len(upstream.Requests()) - atOutage

	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	t.Logf("PostgreSQL back after %v; %d upstream requests during the outage", time.Since(outage).Round(time.Millisecond), duringOutage)
	upstream.ClearFaults()
	held.Release()
	r := <-downloaded
	if r.err != nil {
		t.Fatalf("go mod download through the outage: %v\n%s", r.err, r.stderr)
	}
	got := parseDownloads(t, r.stdout)
	if len(got) != n {
		t.Errorf("downloaded %d modules, want %d", len(got), n)
	}
	for _, d := range got {
		zipSum, modSum := upstream.Sums(t, d.Path, d.Version)
		if d.Error != "" || d.Sum != zipSum || d.GoModSum != modSum {
			t.Errorf("%s@%s: error %q, sums %s %s, want %s %s", d.Path, d.Version, d.Error, d.Sum, d.GoModSum, zipSum, modSum)
		}
	}

	// Recovery: both replicas see the database and listen for revocations.
	client := clientTrusting(t, p.CAFile)
	for i := range 2 {
		waitFor(t, 30*time.Second, "the replica to recover", func() bool {
			resp, err := client.Get(urls[i] + "/readyz")
			if err != nil {
				return false
			}
			var b bytes.Buffer
			b.ReadFrom(resp.Body)
			resp.Body.Close()
			return strings.Contains(b.String(), "database: ok") && strings.Contains(b.String(), "revocation listener connected")
		})
	}
	readyz.Stop()
	if len(readyz.failures) > 0 {
		t.Errorf("/readyz was not 200 %d times, first: %s", len(readyz.failures), readyz.failures[0])
	}

	// A revocation after recovery reaches both replicas within a second.
	revokedAfter, revokedAfterTok := newToken("ci-revoked-after")
	for i := range 2 {
		if code, body := status(i, revokedAfter); code != 200 {
			t.Fatalf("replica %d after recovery: %d %s", i, code, body)
		}
	}
	start := time.Now()
	if _, err := store.Revoke(ctx, revokedAfterTok.ID, "security"); err != nil {
		t.Fatal(err)
	}
	var refusedIn [2]time.Duration
	for i := range 2 {
		for {
			code, _ := status(i, revokedAfter)
			if code == http.StatusUnauthorized {
				refusedIn[i] = time.Since(start)
				break
			}
			if time.Since(start) > 10*time.Second {
				t.Fatalf("replica %d still accepts a token revoked 10s ago", i)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	t.Logf("revocation after recovery refused by the replicas after %v", refusedIn)
	for i, d := range refusedIn {
		if d > time.Second {
			t.Errorf("replica %d refused the revoked token after %v, want within 1s", i, d)
		}
	}

	// The audit trail: exactly one row per audited request either replica
	// logged, once the spools have drained, and the chains verify.
	var want []string
	for i := range 2 {
		want = append(want, auditedRequestIDs(t, logs[i].String())...)
	}
	slices.Sort(want)
	var rows []string
	deadline := time.Now().Add(60 * time.Second)
	for {
		rows = rows[:0]
		dbRows, err := pool.Query(ctx, "SELECT request_id FROM audit_events")
		if err == nil {
			for dbRows.Next() {
				var id string
				dbRows.Scan(&id)
				rows = append(rows, id)
			}
			dbRows.Close()
		}
		if len(rows) >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	// No audited request is made after the logs were read: the rows must be
	// exactly the logged requests, each once.
	slices.Sort(rows)
	if dup := duplicates(rows); len(dup) > 0 {
		t.Errorf("%d request ids have more than one audit row, e.g. %s", len(dup), dup[0])
	}
	if len(want) < 3*n {
		t.Errorf("the replicas logged %d audited requests, want at least %d", len(want), 3*n)
	}
	if !slices.Equal(rows, want) {
		t.Errorf("audit rows (%d) differ from the logged requests (%d)", len(rows), len(want))
	}
	out, err := exec.Command(modgateBinary(t), "audit", "verify", "--database-url", dbURL).CombinedOutput()
	if err != nil {
		t.Errorf("modgate audit verify: %v\n%s", err, out)
	}
	// Losing and regaining the database, and falling back to confirmed
	// tokens, are in the log.
	for _, want := range []string{
		"database: PostgreSQL unreachable",
		"database: PostgreSQL reachable again",
		"tokens: revocation listener disconnected",
		"tokens: database unreachable; accepting API tokens",
		"tokens: database reachable again",
	} {
		if !strings.Contains(logs[0].String(), want) {
			t.Errorf("replica 0's log lacks %q", want)
		}
	}
	var published int
	if err := pool.QueryRow(ctx, "SELECT count(*) FROM published_versions WHERE module = 'corp.test/outage'").Scan(&published); err != nil || published != 0 {
		t.Errorf("%d published_versions rows for the publish refused during the outage (%v)", published, err)
	}
}

func duplicates(sorted []string) []string {
	var dup []string
	for i := 1; i < len(sorted); i++ {
		if sorted[i] == sorted[i-1] && (len(dup) == 0 || dup[len(dup)-1] != sorted[i]) {
			dup = append(dup, sorted[i])
		}
	}
	return dup
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
