package main

import (
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/testing/pgtest"
	"github.com/modgate/modgate/internal/testing/vulntest"
)

// `modgate audit affected` reads the advisory from a vulnerability database (a
// directory or a URL in the /vulndb/ layout) and prints exactly the callers
// who pulled an affected version, those without the fix first.
func TestAuditAffectedCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, url)
	w, err := audit.NewWriter(ctx, audit.WriterConfig{WriterID: "cli", SpoolDir: t.TempDir(), MaintenanceInterval: -1}, pool, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-time.Hour)
	for i, ev := range []audit.Event{
		{Subject: "alice", Teams: []string{"payments"}, Action: audit.ActionZip, Module: "m.test/m", Version: "v1.0.0", Outcome: audit.OutcomeServed},
		{Subject: "alice", Teams: []string{"payments"}, Action: audit.ActionZip, Module: "m.test/m", Version: "v1.2.4", Outcome: audit.OutcomeServed},
		{Subject: "bob", Teams: []string{"web"}, Action: audit.ActionZip, Module: "m.test/m", Version: "v1.2.0", Outcome: audit.OutcomeServed},
		{Subject: "carol", Teams: []string{"web"}, Action: audit.ActionZip, Module: "m.test/m", Version: "v1.2.0", Outcome: audit.OutcomeDenied},
		{Subject: "dave", Teams: []string{"web"}, Action: audit.ActionZip, Module: "m.test/m", Version: "v1.3.0", Outcome: audit.OutcomeServed},
	} {
		ev.Time = base.Add(time.Duration(i) * time.Minute)
		if err := w.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}
	report := vulntest.Report{ID: "GO-2024-1234", Module: "m.test/m", Ranges: [][2]string{{"0", "1.2.4"}}}
	dir := t.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "ID"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "ID", "GO-2024-1234.json"), report.OSV(), 0o644); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(http.StripPrefix("/vulndb", http.FileServer(http.Dir(dir))))
	defer srv.Close()

	for _, db := range []string{dir, srv.URL + "/vulndb"} {
		var out, errOut bytes.Buffer
		if err := runAudit(ctx, []string{"affected", "GO-2024-1234", "--vulndb", db, "--format", "csv", "--database-url", url}, &out, &errOut); err != nil {
			t.Fatalf("--vulndb %s: %v\n%s", db, err, errOut.String())
		}
		var got []string
		for _, line := range strings.Split(strings.TrimSpace(out.String()), "\n")[1:] {
			f := strings.Split(line, ",")
			got = append(got, f[0]+" "+f[3]+" "+f[6])
		}
		if want := "bob v1.2.0 \nalice v1.0.0 v1.2.4"; strings.Join(got, "\n") != want {
			t.Errorf("--vulndb %s:\n%s\nwant:\n%s", db, strings.Join(got, "\n"), want)
		}
	}
	var out, errOut bytes.Buffer
	if err := runAudit(ctx, []string{"affected", "GO-2099-0001", "--vulndb", dir, "--database-url", url}, &out, &errOut); err == nil {
		t.Error("an unknown advisory succeeded")
	}
}
