package policy

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
)

const factsSettings = `settings:
  admin_teams: [platform-admins]
  auditor_teams: [security-audit]
  anonymous: deny
  vulnerabilities:
    enabled: true
    exempt:
      - advisory: GO-2024-0002
        team: payments
        reason: accepted risk
  licenses:
    enabled: true
    deny:
      web: [AGPL-3.0]
`

// factSources answers advisories and licenses for m.test/m from fixed data,
// counting calls.
type factSources struct {
	advisories, licenses atomic.Int32
}

func (f *factSources) options() Options {
	return Options{
		Advisories: func(_ context.Context, mod, ver string) ([]Advisory, error) {
			f.advisories.Add(1)
			switch {
			case mod == "m.test/m" && ver < "v1.2.4":
				return []Advisory{{ID: "GO-2024-0001", Aliases: []string{"CVE-2024-1111"}, Summary: "bad", Fixed: "v1.2.4"}}, nil
			case mod == "m.test/n" && ver == "v1.0.0":
				return []Advisory{{ID: "GO-2024-0002", Aliases: []string{}, Fixed: ""}}, nil
			}
			return []Advisory{}, nil
		},
		Licenses: func(_ context.Context, mod, ver string) ([]string, error) {
			f.licenses.Add(1)
			if mod == "m.test/agpl" {
				return []string{"AGPL-3.0"}, nil
			}
			return []string{"MIT"}, nil
		},
	}
}

// factsPolicy is the shipped Rego with factsSettings; the shipped Rego tests
// are left out: they assert the shipped settings.
func factsPolicy(t testing.TB) string {
	t.Helper()
	dir := copyPolicy(t, defaultDir)
	for _, f := range []string{"authz_test.rego", "supplychain_test.rego"} {
		if err := os.Remove(filepath.Join(dir, f)); err != nil {
			t.Fatal(err)
		}
	}
	writeFile(t, dir, "settings.yaml", factsSettings)
	return dir
}

func TestFacts(t *testing.T) {
	t.Parallel()
	dir := factsPolicy(t)
	var src factSources
	e := loadEngine(t, dir, src.options())
	ctx := context.Background()
	web, payments := member("w@corp.example", "web"), member("p@corp.example", "payments")

	tests := []struct {
		name    string
		in      Input
		wantErr string // "" = allowed
	}{
		{"fail/affected", pull(web, ActionInfo, RoutePublic, "m.test/m", "v1.2.3"),
			"m.test/m@v1.2.3 is affected by GO-2024-0001 (CVE-2024-1111): fixed in v1.2.4"},
		{"ok/fixed", pull(web, ActionZip, RoutePublic, "m.test/m", "v1.2.4"), ""},
		{"ok/list-has-no-version", pull(web, ActionList, RoutePublic, "m.test/m", ""), ""},
		{"fail/no-fix", pull(web, ActionZip, RoutePublic, "m.test/n", "v1.0.0"), "is affected by GO-2024-0002: no fixed version yet"},
		{"ok/exempt-team", pull(payments, ActionZip, RoutePublic, "m.test/n", "v1.0.0"), ""},
		{"fail/license", pull(web, ActionZip, RoutePublic, "m.test/agpl", "v1.0.0"), "it is licensed under AGPL-3.0, which team web may not use"},
		{"ok/license-other-team", pull(payments, ActionZip, RoutePublic, "m.test/agpl", "v1.0.0"), ""},
	}
	for _, tt := range tests {
		d, err := e.Decide(ctx, tt.in)
		if err != nil {
			t.Fatalf("%s: %v", tt.name, err)
		}
		if tt.wantErr == "" && !d.Allow {
			t.Errorf("%s: denied: %v", tt.name, d.Reasons)
		}
		if tt.wantErr != "" && (d.Allow || !strings.Contains(d.Reason(), tt.wantErr)) {
			t.Errorf("%s: allow=%v reason %q, want %q", tt.name, d.Allow, d.Reason(), tt.wantErr)
		}
	}

	// List filtering leaves affected versions out and reads no zip.
	before := src.licenses.Load()
	got, err := e.FilterVersions(ctx, pull(web, ActionList, RoutePublic, "m.test/m", ""), []string{"v1.2.2", "v1.2.3", "v1.2.4", "v1.3.0"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"v1.2.4", "v1.3.0"}; !slices.Equal(got, want) {
		t.Errorf("FilterVersions = %v, want %v", got, want)
	}
	if n := src.licenses.Load(); n != before {
		t.Errorf("list filtering computed licenses %d times", n-before)
	}

	// A new advisory for a cached version changes the decision: the
	// advisories are part of the cache key.
	in := pull(web, ActionZip, RoutePublic, "m.test/m", "v1.3.0")
	if d, _ := e.Decide(ctx, in); !d.Allow {
		t.Fatalf("v1.3.0 denied: %v", d.Reasons)
	}
	in.Advisories = []Advisory{{ID: "GO-2024-0009", Aliases: []string{}, Fixed: "v1.3.1"}}
	if d, _ := e.Decide(ctx, in); d.Allow || d.Cached {
		t.Errorf("a new advisory was answered from the cache: allow=%v cached=%v", d.Allow, d.Cached)
	}
}

// With the switches off (the shipped settings) the engine computes neither,
// although the shipped Rego reads both fields.
func TestFactsNotComputedWhenOff(t *testing.T) {
	t.Parallel()
	var src factSources
	e := loadEngine(t, defaultDir, src.options())
	for _, v := range []string{"v1.0.0", "v1.2.3"} {
		if d, err := e.Decide(context.Background(), pull(member("a@corp.example", "web"), ActionZip, RoutePublic, "m.test/m", v)); err != nil || !d.Allow {
			t.Fatalf("Decide: %v %v", d, err)
		}
	}
	if a, l := src.advisories.Load(), src.licenses.Load(); a != 0 || l != 0 {
		t.Errorf("computed advisories %d and licenses %d times with the rules off", a, l)
	}
}

// BenchmarkDecideWithFacts measures decisions of the shipped policy with the
// vulnerability and license rules on, answered from the decision cache: each
// still looks up the version's advisories and licenses (in memory, as the
// composition root's caches answer them) to build the cache key.
func BenchmarkDecideWithFacts(b *testing.B) {
	dir := factsPolicy(b)
	for _, on := range []bool{false, true} {
		name := "rules-off"
		opts := Options{}
		if on {
			name = "rules-on"
			var src factSources
			opts = src.options()
		} else {
			writeFile(b, dir, "settings.yaml", "settings: {}\n")
		}
		e := loadEngine(b, dir, opts)
		in := pull(member("w@corp.example", "web"), ActionZip, RoutePublic, "m.test/m", "v1.2.3")
		ctx := context.Background()
		if _, err := e.Decide(ctx, in); err != nil {
			b.Fatal(err)
		}
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if d, err := e.Decide(ctx, in); err != nil || !d.Cached {
					b.Fatalf("not a cache hit: %v %v", d, err)
				}
			}
		})
	}
}
