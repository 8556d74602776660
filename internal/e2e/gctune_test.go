package e2e

import (
	"path/filepath"
	"strings"
	"testing"
)

// TestServeTunesGC: modgate serve runs the collector at gctune.DefaultPercent
// unless the operator set GOGC or GOMEMLIMIT, and logs what it runs with and
// why (docs/operations.md).
func TestServeTunesGC(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want []string // fields of the startup log line
	}{
		{
			name: "ok/default",
			env:  map[string]string{"GOGC": "", "GOMEMLIMIT": ""},
			want: []string{`"gogc":400`, `"gogc_from":"default"`},
		},
		{
			name: "ok/environment-wins",
			env:  map[string]string{"GOGC": "50", "GOMEMLIMIT": "200MiB"},
			want: []string{`"gogc":50`, `"gogc_from":"GOGC"`, `"memory_limit":"200 MiB"`, `"memory_limit_from":"GOMEMLIMIT"`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			p := startModgate(t, "--cache-dir", filepath.Join(t.TempDir(), "cache"), "--upstream", "http://127.0.0.1:1", "--anonymous")
			lines := p.logLines(`"msg":"garbage collector"`)
			if len(lines) != 1 {
				t.Fatalf("%d garbage collector log lines, want 1:\n%s", len(lines), p.logs.String())
			}
			for _, w := range tt.want {
				if !strings.Contains(lines[0], w) {
					t.Errorf("log line %s lacks %s", lines[0], w)
				}
			}
		})
	}
}
