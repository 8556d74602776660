package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/testing/gotest"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/proxytest"
	"github.com/modgate/modgate/internal/tokens"
)

// waitRows polls until exactly want rows match f (or the deadline passes) and
// returns them.
func waitRows(t *testing.T, pool *pgxpool.Pool, f audit.Filter, want int) []audit.Row {
	t.Helper()
	f.Limit = 1000
	deadline := time.Now().Add(20 * time.Second)
	for {
		rows, _, err := audit.Query(context.Background(), pool, f)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) >= want || time.Now().After(deadline) {
			return rows
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func countRows(t *testing.T, pool *pgxpool.Pool, where string) int {
	t.Helper()
	var n int
	if err := pool.QueryRow(context.Background(), "SELECT count(*) FROM audit_events WHERE "+where).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// Every request kind through the real go command leaves exactly the expected rows,
// and an auditor reads them over the HTTP API.
func TestAuditTrailThroughGoCommand(t *testing.T) {
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	pool, dbURL := pgtest.NewPool(t)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	cfg.Policy.Dir = copyPolicy(t, map[string]string{"data.yaml": `settings:
  auditor_teams: [security-audit]
owners:
  mod.test/hello/v2:
    team: payments
`})
	url := startApp(t, cfg)

	store, err := tokens.NewStore(pool, tokens.Config{})
	if err != nil {
		t.Fatal(err)
	}
	dev, _, _ := store.Create(context.Background(), tokens.CreateRequest{Subject: "dave", Teams: []string{"checkout"}})
	auditor, _, _ := store.Create(context.Background(), tokens.CreateRequest{Subject: "ann", Teams: []string{"security-audit"}})

	g := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
	writeFile(t, filepath.Join(g.Home, ".netrc"), netrcFor(url, dev))
	if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloPath+"@v1.0.0"); err != nil {
		t.Fatalf("download: %v\n%s", err, stderr)
	}
	if _, stderr, err := g.Run("", "list", "-m", "-versions", proxytest.HelloPath); err != nil {
		t.Fatalf("list: %v\n%s", err, stderr)
	}
	if _, stderr, err := g.Run("", "mod", "download", proxytest.HelloV2Path+"@v2.0.0"); err == nil || !strings.Contains(stderr, "403") {
		t.Fatalf("denied download: %v\n%s", err, stderr)
	}
	anon := gotest.New(t, "GOPROXY="+url, "GONOSUMDB=mod.test", "SSL_CERT_FILE="+p.CAFile)
	anon.Run("", "mod", "download", proxytest.LegacyPath+"@v1.0.0")

	// go list -m -versions also reads the newest version's .info and .mod, for
	// its retractions.
	hello := waitRows(t, pool, audit.Filter{Module: proxytest.HelloPath}, 6)
	var got []string
	for _, r := range hello {
		got = append(got, fmt.Sprintf("%s %s %s %d %s", r.Action, r.Version, r.Outcome, r.Status, r.Subject))
		if r.Teams == nil || len(r.Teams) != 1 || r.Teams[0] != "checkout" || r.AuthMethod != "token" || r.RequestID == "" || r.ClientAddr != "127.0.0.1" {
			t.Errorf("row lacks identity or request fields: %+v", r.Event)
		}
		if r.Action == audit.ActionZip && r.Bytes == 0 {
			t.Errorf("zip row has no byte count: %+v", r.Event)
		}
	}
	sort.Strings(got)
	want := []string{
		"info v1.0.0 served 200 dave",
		"info v1.1.0 served 200 dave",
		"list  served 200 dave",
		"mod v1.0.0 served 200 dave",
		"mod v1.1.0 served 200 dave",
		"zip v1.0.0 served 200 dave",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows for %s:\n%s\nwant:\n%s", proxytest.HelloPath, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Every request the go command made for the denied module is a denied row.
	denied := waitRows(t, pool, audit.Filter{Module: proxytest.HelloV2Path}, 1)
	if len(denied) == 0 {
		t.Error("no row for the denied download")
	}
	for _, r := range denied {
		if r.Outcome != audit.OutcomeDenied || r.Status != 403 || !strings.Contains(r.Reason, "team checkout may not pull mod.test/hello/v2@v2.0.0") || r.DecisionID == "" {
			t.Errorf("denied row: %+v", r.Event)
		}
	}
	unauth := waitRows(t, pool, audit.Filter{Module: proxytest.LegacyPath, Outcomes: []audit.Outcome{audit.OutcomeUnauthenticated}}, 1)
	if len(unauth) == 0 || unauth[0].Reason != "no credentials" || unauth[0].Version != "v1.0.0" {
		t.Errorf("unauthenticated rows: %+v", unauth)
	}

	// The auditor's question over HTTP; a developer may not ask it.
	code, body := getWithToken(t, p.CAFile, url+"/api/v1/audit/events?module="+proxytest.HelloPath+"&action=zip", auditor)
	var page struct{ Events []audit.Row }
	if code != 200 || json.Unmarshal([]byte(body), &page) != nil || len(page.Events) != 1 || page.Events[0].Subject != "dave" {
		t.Errorf("audit API for the auditor: %d %s", code, body)
	}
	if code, body := getWithToken(t, p.CAFile, url+"/api/v1/audit/events", dev); code != 403 {
		t.Errorf("audit API for a developer: %d %s, want 403", code, body)
	}
	// The writer ships two batches at once, so for a moment a later batch can be
	// committed before an earlier one; once shipping settles the chain is whole.
	deadline := time.Now().Add(20 * time.Second)
	for {
		rep, err := audit.Verify(context.Background(), pool)
		if err == nil && rep.OK() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("audit verify: %v %+v", err, rep.Problems())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// PostgreSQL stopped in the middle of a burst and started again: the final count
// of rows equals the count of requests, with no duplicates.
func TestAuditSurvivesPostgresOutage(t *testing.T) {
	cluster := pgtest.NewCluster(t)
	dbURL := cluster.NewDatabase(t)
	upstream := proxytest.NewServer(t, proxytest.StandardModules()...)
	p := newPKI(t)
	cfg := tlsConfigFor(p, upstream.URL)
	cfg.Database.URL = dbURL
	cfg.Auth.APITokens = false
	cfg.TLS.ClientCAFile = p.CAFile // authenticate by client certificate: no database needed per request
	certFile, keyFile := p.clientFiles(t, "loadgen")
	url := startApp(t, cfg)
	client := clientWithCert(t, p.CAFile, certFile, keyFile)
	path := url + "/" + "mod.test/hello/@v/v1.0.0.info"
	if resp, err := client.Get(path); err != nil || resp.StatusCode != 200 {
		t.Fatalf("warm-up: %v %v", err, resp)
	}

	const n = 3000
	var sent, ok atomic.Int64
	var wg sync.WaitGroup
	work := make(chan struct{}, n)
	for range n {
		work <- struct{}{}
	}
	close(work)
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range work {
				sent.Add(1)
				resp, err := client.Get(path)
				if err == nil {
					resp.Body.Close()
					if resp.StatusCode == 200 {
						ok.Add(1)
					}
				}
				if sent.Load() == n/3 {
					go cluster.Stop()
				}
			}
		}()
	}
	wg.Wait()
	if ok.Load() != n {
		t.Fatalf("%d of %d requests served during the outage", ok.Load(), n)
	}
	if err := cluster.Start(); err != nil {
		t.Fatal(err)
	}
	pool := pgtest.Pool(t, dbURL)
	want := n + 1 // and the warm-up
	deadline := time.Now().Add(60 * time.Second)
	for countRows(t, pool, "action = 'info'") < want && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	if got := countRows(t, pool, "action = 'info'"); got != want {
		t.Fatalf("audit rows = %d, want %d", got, want)
	}
	if dups := countRows(t, pool, "event_id IN (SELECT event_id FROM audit_events GROUP BY event_id HAVING count(*) > 1)"); dups != 0 {
		t.Errorf("%d duplicated rows", dups)
	}
}

var _ = http.StatusOK
