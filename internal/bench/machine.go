package bench

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"time"
)

// Machine describes where a report was measured: figures from different machines
// are not comparable, and a busy machine explains a noisy one.
type Machine struct {
	OS       string  `json:"os"`
	Arch     string  `json:"arch"`
	CPU      string  `json:"cpu"`
	CPUs     int     `json:"cpus"`
	MemoryMB int64   `json:"memory_mb"`
	Load1    float64 `json:"load1"` // 1-minute load average when the run started
	Kernel   string  `json:"kernel"`
	Go       string  `json:"go"`
	Modgate  string  `json:"modgate"`
}

func (m Machine) String() string {
	return fmt.Sprintf("%s/%s, %d × %s, %d MB RAM, load %.2f at start, kernel %s, %s, modgate %s",
		m.OS, m.Arch, m.CPUs, m.CPU, m.MemoryMB, m.Load1, m.Kernel, m.Go, m.Modgate)
}

func describeMachine(ctx context.Context, cfg Config) Machine {
	m := Machine{OS: runtime.GOOS, Arch: runtime.GOARCH, CPUs: runtime.NumCPU(), CPU: "unknown"}
	if v := procField("/proc/cpuinfo", "model name"); v != "" {
		m.CPU = v
	}
	if v := procField("/proc/meminfo", "MemTotal"); v != "" {
		var kb int64
		fmt.Sscanf(v, "%d", &kb)
		m.MemoryMB = kb / 1024
	}
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		fmt.Sscanf(string(b), "%f", &m.Load1)
	}
	if b, err := os.ReadFile("/proc/sys/kernel/osrelease"); err == nil {
		m.Kernel = strings.TrimSpace(string(b))
	}
	m.Go = commandLine(ctx, cfg.Go, "version")
	m.Modgate = commandLine(ctx, cfg.Modgate, "version")
	return m
}

// procField returns the value of the first "key : value" line of a /proc file.
func procField(path, key string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(sc.Text(), ":")
		if ok && strings.TrimSpace(k) == key {
			return strings.TrimSpace(v)
		}
	}
	return ""
}

// commandLine returns the first line a command prints, or "unknown".
func commandLine(ctx context.Context, name string, args ...string) string {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).Output()
	if err != nil {
		return "unknown"
	}
	line, _, _ := bytes.Cut(out, []byte("\n"))
	return strings.TrimSpace(string(line))
}
