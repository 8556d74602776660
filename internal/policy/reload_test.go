package policy

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// startWatch runs e.Watch until the test ends.
func startWatch(t *testing.T, e *Engine, interval time.Duration) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { e.Watch(ctx, interval) })
	t.Cleanup(func() { cancel(); wg.Wait() })
}

func TestReloadOnDataChange(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t, defaultDir)
	e := loadEngine(t, dir, Options{})
	startWatch(t, e, 50*time.Millisecond)
	ctx := context.Background()
	web := pull(member("carol", "web"), ActionZip, RoutePrivate, "corp.example/payments/api", "v1.0.0")

	if d, err := e.Decide(ctx, web); err != nil || d.Allow {
		t.Fatalf("before the edit: %+v, %v; want a deny", d, err)
	}
	before := e.Revision()

	owners, err := os.ReadFile(filepath.Join(dir, "owners.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	edited := strings.Replace(string(owners), "shared_with: [checkout, risk]", "shared_with: [checkout, risk, web]", 1)
	if edited == string(owners) {
		t.Fatal("owners.yaml no longer shares corp.example/payments with checkout; update the test")
	}
	writeFile(t, dir, "owners.yaml", edited)

	waitFor(t, 30*time.Second, "team web still denied after sharing the prefix with it", func() bool {
		d, err := e.Decide(ctx, web)
		return err == nil && d.Allow
	})
	if e.Revision() == before {
		t.Errorf("revision unchanged after reload")
	}
	if st := e.Status(); st.Revision != e.Revision() || st.LastError != "" || !st.LoadedAt.Equal(testNow) {
		t.Errorf("Status = %+v", st)
	}
}

func TestReloadRejectsBadPolicy(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		file    string
		content string
		wantErr string
	}{
		{"fail/rego-syntax", "authz.rego", "package modgate.authz\n\ndecision := {\n", "rego_parse_error"},
		{"fail/rego-compile", "extra.rego", "package modgate.authz\n\nx := undefined_function(1)\n", "undefined function"},
		{"fail/rego-test", "broken_test.rego", "package modgate.authz_test\n\ntest_everyone_may_publish if data.modgate.authz.decision.allow with input as {\"action\": \"publish\"}\n", "test_everyone_may_publish"},
		{"fail/data-unknown-key", "owners.yaml", "owners:\n  corp.example/x:\n    team: x\n    shared-with: [y]\n", "shared-with"},
		{"fail/data-missing-team", "owners.yaml", "owners:\n  corp.example/x:\n    shared_with: [y]\n", "team is missing"},
		{"fail/data-duplicate-entry", "zz-more.yaml", "owners:\n  corp.example/payments: {team: web}\n", "already defined in owners.yaml"},
		{"fail/data-owner-case-duplicate", "zz-more.yaml", "owners:\n  corp.example/Payments: {team: web}\n", `"corp.example/Payments" and "corp.example/payments" differ only by case`},
		{"fail/data-denylist-case-duplicate", "denylist.yaml", "denylist:\n  github.com/sirupsen/logrus: {reason: a}\n  github.com/Sirupsen/logrus: {reason: b}\n", "differ only by case"},
		{"fail/data-bad-version", "denylist.yaml", "denylist:\n  example.com/x: {reason: bad, versions: [1.0]}\n", "not a canonical semantic version"},
		{"fail/data-yaml-syntax", "members.yaml", "members: [\n", "members.yaml"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			dir := copyPolicy(t, defaultDir)
			reg := prometheus.NewRegistry()
			e := loadEngine(t, dir, Options{Registerer: reg})
			good := e.Revision()
			in := pull(member("alice", "payments"), ActionZip, RoutePrivate, "corp.example/payments/ledger", "v1.0.0")

			writeFile(t, dir, tt.file, tt.content)
			err := e.Reload(context.Background())
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Reload = %v, want an error mentioning %q", err, tt.wantErr)
			}
			if e.Revision() != good {
				t.Errorf("revision %s after a failed reload, want the last good %s", e.Revision(), good)
			}
			st := e.Status()
			if st.Revision != good || !strings.Contains(st.LastError, tt.wantErr) || st.LastErrorAt.IsZero() {
				t.Errorf("Status = %+v", st)
			}
			if d, err := e.Decide(context.Background(), in); err != nil || !d.Allow || d.Revision != good {
				t.Errorf("Decide after a failed reload = %+v, %v; want the last good policy's allow", d, err)
			}
			if v := metricValue(t, reg, "modgate_policy_last_reload_error"); v != 1 {
				t.Errorf("last_reload_error = %v, want 1", v)
			}
			if v := metricValue(t, reg, "modgate_policy_reloads_total", "failure"); v != 1 {
				t.Errorf("reloads{failure} = %v, want 1", v)
			}
			if v := metricValue(t, reg, "modgate_policy_revision_info", good); v != 1 {
				t.Errorf("revision_info{%s} = %v, want 1", good, v)
			}
			// Loading the broken directory from scratch fails outright.
			if _, err := Load(context.Background(), dir, Options{}); err == nil {
				t.Errorf("Load of the broken policy succeeded")
			}
		})
	}
}

func TestWatchRecoversAfterFix(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t, defaultDir)
	reg := prometheus.NewRegistry()
	e := loadEngine(t, dir, Options{Registerer: reg})
	startWatch(t, e, 50*time.Millisecond)
	good := e.Revision()
	original, err := os.ReadFile(filepath.Join(dir, "authz.rego"))
	if err != nil {
		t.Fatal(err)
	}

	writeFile(t, dir, "authz.rego", string(original)+"\nthis is not rego\n")
	waitFor(t, 30*time.Second, "broken edit not reported in Status", func() bool { return e.Status().LastError != "" })
	if e.Revision() != good {
		t.Fatalf("broken policy was loaded")
	}

	// The fix: a real change, so a new revision.
	writeFile(t, dir, "authz.rego", string(original)+"\n# reviewed\n")
	waitFor(t, 30*time.Second, "fixed policy not loaded", func() bool { return e.Revision() != good })
	if st := e.Status(); st.LastError != "" {
		t.Errorf("LastError = %q after a good reload", st.LastError)
	}
	if v := metricValue(t, reg, "modgate_policy_last_reload_error"); v != 0 {
		t.Errorf("last_reload_error = %v after a good reload", v)
	}
	if v := metricValue(t, reg, "modgate_policy_reloads_total", "success"); v != 2 {
		t.Errorf("reloads{success} = %v, want 2 (load + fix)", v)
	}
}

// TestDecideDuringReloads checks that decisions stay consistent while the
// policy is swapped underneath them (run with -race).
func TestDecideDuringReloads(t *testing.T) {
	t.Parallel()
	dir := copyPolicy(t, defaultDir)
	e := loadEngine(t, dir, Options{})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	owner := pull(member("alice", "payments"), ActionZip, RoutePrivate, "corp.example/payments/ledger", "v1.0.0")

	var wg sync.WaitGroup
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				d, err := e.Decide(ctx, owner)
				if err != nil && ctx.Err() == nil {
					t.Errorf("Decide: %v", err)
					return
				}
				if err == nil && !d.Allow {
					t.Errorf("owner denied during reload: %q", d.Reasons)
					return
				}
			}
		})
	}
	for i := range 5 {
		writeFile(t, dir, "members.yaml", "members:\n  ci-release@corp.example: [platform]\n  someone-"+string(rune('a'+i))+": [web]\n")
		if err := e.Reload(ctx); err != nil {
			t.Fatalf("Reload %d: %v", i, err)
		}
	}
	cancel()
	wg.Wait()
}
