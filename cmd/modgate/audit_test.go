package main

import (
	"bytes"
	"context"
	"strings"
	"testing"
	"time"

	"github.com/modgate/modgate/internal/audit"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestAuditCommand(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	url := pgtest.NewDatabase(t)
	pool := pgtest.Pool(t, url)
	w, err := audit.NewWriter(ctx, audit.WriterConfig{WriterID: "cli", SpoolDir: t.TempDir(), MaintenanceInterval: -1}, pool, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, ev := range []audit.Event{
		{Subject: "alice", Teams: []string{"payments"}, Action: audit.ActionZip, Module: "github.com/acme/pay", Version: "v1.0.0", Outcome: audit.OutcomeServed},
		{Subject: "bob", Teams: []string{"infra"}, Action: audit.ActionZip, Module: "github.com/acme/pay", Version: "v1.0.0", Outcome: audit.OutcomeDenied, Reason: "no"},
		{Subject: "carol", Teams: []string{"payments"}, Action: audit.ActionMod, Module: "github.com/other/x", Version: "v0.1.0", Outcome: audit.OutcomeServed, Time: time.Now().AddDate(0, 0, -200)},
	} {
		if err := w.Record(ev); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(ctx); err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		name    string
		args    []string
		want    []string // substrings of stdout
		notWant []string
		wantErr bool
	}{
		{"ok/query-all", []string{"query"}, []string{"alice", "bob", "carol"}, nil, false},
		{"ok/query-outcome-csv", []string{"query", "--outcome", "denied", "--format", "csv"}, []string{"event_id", "bob"}, []string{"alice"}, false},
		{"ok/query-glob-json", []string{"query", "--module", "github.com/acme/*", "--format", "json"}, []string{`"subject":"alice"`}, []string{"carol"}, false},
		{"ok/who-pulled", []string{"who-pulled", "github.com/acme/pay@v1.0.0"}, []string{"alice"}, []string{"bob"}, false},
		{"ok/team-pulls", []string{"team-pulls", "payments", "--since", "90d"}, []string{"alice"}, []string{"carol"}, false},
		{"ok/team-pulls-year", []string{"team-pulls", "payments", "--since", "365d"}, []string{"alice", "carol"}, nil, false},
		{"ok/verify", []string{"verify"}, []string{"verified 3 rows in 1 chains"}, nil, false},
		{"ok/help", []string{"--help"}, nil, nil, false},
		{"ok/query-help", []string{"query", "--help"}, nil, nil, false},
		{"fail/unknown", []string{"frobnicate"}, nil, nil, true},
		{"fail/bad-since", []string{"query", "--since", "yesterday-ish"}, nil, nil, true},
		{"fail/bad-format", []string{"query", "--format", "xml"}, nil, nil, true},
		{"fail/who-pulled-no-arg", []string{"who-pulled"}, nil, nil, true},
		{"fail/bad-outcome", []string{"query", "--outcome", "served,bogus"}, nil, nil, true},
		{"fail/bad-action", []string{"query", "--action", "pull"}, nil, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			args := append(tt.args, "--database-url", url)
			if strings.Contains(tt.name, "help") || tt.name == "fail/unknown" {
				args = tt.args
			}
			err := runAudit(ctx, args, &out, &errOut)
			if (err != nil) != tt.wantErr {
				t.Fatalf("err = %v, wantErr %v; stderr %s", err, tt.wantErr, errOut.String())
			}
			for _, s := range tt.want {
				if !strings.Contains(out.String(), s) {
					t.Errorf("stdout lacks %q:\n%s", s, out.String())
				}
			}
			for _, s := range tt.notWant {
				if strings.Contains(out.String(), s) {
					t.Errorf("stdout has %q:\n%s", s, out.String())
				}
			}
		})
	}

	// After tampering, verify fails and names the row.
	if _, err := pool.Exec(ctx, "UPDATE audit_events SET subject = 'mallory' WHERE subject = 'bob'"); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	if err := runAudit(ctx, []string{"verify", "--database-url", url}, &out, &out); err == nil || !strings.Contains(out.String(), "modified") {
		t.Errorf("verify after tampering: err=%v, output:\n%s", err, out.String())
	}
}
