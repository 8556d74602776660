package gctune

import (
	"math"
	"runtime/debug"
	"testing"
)

// restore puts back the collector settings a test changed; the runtime's are
// process-wide.
func restore(t *testing.T) {
	t.Helper()
	percent := debug.SetGCPercent(-1)
	debug.SetGCPercent(percent)
	limit := debug.SetMemoryLimit(-1)
	t.Cleanup(func() {
		debug.SetGCPercent(percent)
		debug.SetMemoryLimit(limit)
	})
}

func env(kv map[string]string) func(string) string {
	return func(k string) string { return kv[k] }
}

func noCgroup() (int64, string, bool) { return 0, "", false }

func TestApply(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name        string
		env         map[string]string
		cgroup      func() (int64, string, bool)
		setBefore   func() // what the runtime took from the environment at start
		wantPercent int
		wantPSource string
		wantLimit   int64
		wantLSource string
	}{
		{
			name:        "default/no-cgroup",
			cgroup:      noCgroup,
			wantPercent: DefaultPercent, wantPSource: "default",
			wantLimit: math.MaxInt64, wantLSource: "none",
		},
		{
			name:        "default/cgroup-limit",
			cgroup:      func() (int64, string, bool) { return 10 * gib, "/sys/fs/cgroup/memory.max", true },
			wantPercent: DefaultPercent, wantPSource: "default",
			wantLimit: 8 * gib, wantLSource: "cgroup /sys/fs/cgroup/memory.max", // limitShare of it
		},
		{
			name:        "env/GOGC-wins",
			env:         map[string]string{"GOGC": "50"},
			setBefore:   func() { debug.SetGCPercent(50) },
			cgroup:      noCgroup,
			wantPercent: 50, wantPSource: "GOGC",
			wantLimit: math.MaxInt64, wantLSource: "none",
		},
		{
			name:        "env/GOGC-off",
			env:         map[string]string{"GOGC": "off"},
			setBefore:   func() { debug.SetGCPercent(-1) },
			cgroup:      noCgroup,
			wantPercent: -1, wantPSource: "GOGC",
			wantLimit: math.MaxInt64, wantLSource: "none",
		},
		{
			name:        "env/GOMEMLIMIT-wins-over-cgroup",
			env:         map[string]string{"GOMEMLIMIT": "300MiB"},
			setBefore:   func() { debug.SetMemoryLimit(300 << 20) },
			cgroup:      func() (int64, string, bool) { return 10 * gib, "/sys/fs/cgroup/memory.max", true },
			wantPercent: DefaultPercent, wantPSource: "default",
			wantLimit: 300 << 20, wantLSource: "GOMEMLIMIT",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			restore(t)
			debug.SetGCPercent(100)
			debug.SetMemoryLimit(math.MaxInt64)
			if tt.setBefore != nil {
				tt.setBefore()
			}
			s := Apply(env(tt.env), tt.cgroup)
			if s.Percent != tt.wantPercent || s.PercentSource != tt.wantPSource {
				t.Errorf("percent = %d from %q, want %d from %q", s.Percent, s.PercentSource, tt.wantPercent, tt.wantPSource)
			}
			if s.Limit != tt.wantLimit || s.LimitSource != tt.wantLSource {
				t.Errorf("limit = %d from %q, want %d from %q", s.Limit, s.LimitSource, tt.wantLimit, tt.wantLSource)
			}
			// The runtime must run with what Apply reports.
			if got := debug.SetGCPercent(-1); got != tt.wantPercent {
				t.Errorf("runtime GOGC = %d, want %d", got, tt.wantPercent)
			}
			debug.SetGCPercent(tt.wantPercent)
			if got := debug.SetMemoryLimit(-1); got != tt.wantLimit {
				t.Errorf("runtime memory limit = %d, want %d", got, tt.wantLimit)
			}
		})
	}
}

func TestParseLimit(t *testing.T) {
	tests := []struct {
		in     string
		want   int64
		wantOK bool
	}{
		{"536870912\n", 536870912, true},
		{"max\n", 0, false},
		{"9223372036854771712\n", 0, false}, // cgroup v1's "no limit"
		{"", 0, false},
		{"garbage", 0, false},
		{"-1", 0, false},
		{"0", 0, false},
	}
	for _, tt := range tests {
		got, ok := parseLimit(tt.in)
		if got != tt.want || ok != tt.wantOK {
			t.Errorf("parseLimit(%q) = %d, %v; want %d, %v", tt.in, got, ok, tt.want, tt.wantOK)
		}
	}
}

// TestCgroupLimitOnThisMachine reads the real files: whatever this machine has,
// a limit it reports must be positive and name its file.
func TestCgroupLimitOnThisMachine(t *testing.T) {
	n, file, ok := CgroupLimit()
	if ok && (n <= 0 || file == "") {
		t.Fatalf("CgroupLimit() = %d, %q, true", n, file)
	}
	t.Logf("cgroup limit: %d from %q (ok=%v)", n, file, ok)
}
