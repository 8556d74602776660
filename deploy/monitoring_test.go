package deploy_test

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
)

const monitoringDir = "monitoring"

// promtool returns Prometheus's promtool, which .ci/tools installs (Debian's
// prometheus package) before make test runs.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		t.Fatal("promtool not found: run `bash .ci/tools promtool` (installs Debian's prometheus package)")
	}
	return p
}

func runTool(t *testing.T, dir, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", filepath.Base(bin), strings.Join(args, " "), err, out)
	}
	return string(out)
}

// The alerting rules are valid and behave as their unit tests say.
func TestAlertRules(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	out := runTool(t, monitoringDir, pt, "check", "rules", "alerts.yaml")
	if !strings.Contains(out, "SUCCESS") {
		t.Errorf("promtool check rules: %s", out)
	}
	runTool(t, monitoringDir, pt, "test", "rules", "alerts_test.yaml")

	// Every alert the issue asks for exists and has a unit test.
	var rules struct {
		Groups []struct {
			Rules []struct {
				Alert string `yaml:"alert"`
			} `yaml:"rules"`
		} `yaml:"groups"`
	}
	readYAML(t, filepath.Join(monitoringDir, "alerts.yaml"), &rules)
	tests, err := os.ReadFile(filepath.Join(monitoringDir, "alerts_test.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, g := range rules.Groups {
		for _, r := range g.Rules {
			have[r.Alert] = true
			if !strings.Contains(string(tests), "alertname: "+r.Alert+"\n") {
				t.Errorf("alert %s has no unit test in alerts_test.yaml", r.Alert)
			}
		}
	}
	for _, want := range []string{"ModgateAuditNotShipping", "ModgateAuditSpoolGrowing", "ModgateIntegrityFailure",
		"ModgateUpstreamDown", "ModgateCertificateExpiringSoon", "ModgatePolicyReloadRejected"} {
		if !have[want] {
			t.Errorf("alerts.yaml lacks %s", want)
		}
	}
}

// dashboard is the part of Grafana's dashboard model the checks read.
type dashboard struct {
	UID    string  `json:"uid"`
	Panels []panel `json:"panels"`
}

type panel struct {
	ID      int    `json:"id"`
	Type    string `json:"type"`
	Title   string `json:"title"`
	Targets []struct {
		Expr string `json:"expr"`
	} `json:"targets"`
}

// Every panel of the dashboard has a query, and every query is valid PromQL:
// promtool checks them as recording rules, with Grafana's variables substituted.
func TestDashboardQueries(t *testing.T) {
	t.Parallel()
	pt := promtool(t)
	data, err := os.ReadFile(filepath.Join(monitoringDir, "grafana-dashboard.json"))
	if err != nil {
		t.Fatal(err)
	}
	var d dashboard
	dec := json.NewDecoder(strings.NewReader(string(data)))
	if err := dec.Decode(&d); err != nil {
		t.Fatal(err)
	}
	if d.UID == "" {
		t.Error("dashboard has no uid")
	}
	ids := map[int]bool{}
	var rules strings.Builder
	rules.WriteString("groups:\n  - name: dashboard\n    rules:\n")
	titles := map[string]bool{}
	for _, p := range d.Panels {
		if ids[p.ID] {
			t.Errorf("panel id %d used twice", p.ID)
		}
		ids[p.ID] = true
		titles[p.Title] = true
		if p.Type == "row" {
			continue
		}
		if len(p.Targets) == 0 {
			t.Errorf("panel %q has no query", p.Title)
		}
		for i, tg := range p.Targets {
			expr := strings.NewReplacer("$__rate_interval", "5m", "$instance", ".*").Replace(tg.Expr)
			fmt.Fprintf(&rules, "      - record: panel_%d_%d\n        expr: %q\n", p.ID, i, expr)
		}
	}
	for _, want := range []string{"Request rate by route", "Latency p99 by route", "Cache hit ratio",
		"Upstream errors per mirror", "Upstream latency p99 per mirror", "Audit queue (events not yet in PostgreSQL)",
		"Audit spool size", "Audit lag", "Policy decisions", "Denials", "Integrity failures",
		"Token and sign-in failures", "Cache filesystem use"} {
		if !titles[want] {
			t.Errorf("dashboard lacks the panel %q", want)
		}
	}
	f := filepath.Join(t.TempDir(), "dashboard-queries.yaml")
	if err := os.WriteFile(f, []byte(rules.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	runTool(t, ".", pt, "check", "rules", f)
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yamlv3.Unmarshal(data, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}
