// Package gctune sets the Go garbage collector for the modgate server.
//
// Go's default (GOGC=100) collects whenever the heap has doubled. modgate's live
// heap is small (about 10 MB: the compiled policy, the caches' indexes) and every
// request allocates, so under load the collector ran every few milliseconds and
// cost about 15% of the CPU per request (docs/benchmarks.md). A larger GOGC lets
// the heap grow further between collections; a memory limit taken from the
// container's cgroup keeps that growth inside the memory the operator granted.
// GOGC and GOMEMLIMIT, when set in the environment, always win.
package gctune

import (
	"fmt"
	"math"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
)

// DefaultPercent is the GOGC modgate serves with unless GOGC is set: a
// collection when the heap has grown to five times what the last one kept.
// With modgate's live heap this stays far below the 150 MB peak RSS target
// (docs/benchmarks.md, the memory scenario).
const DefaultPercent = 400

// limitShare is the part of a cgroup memory limit given to the Go heap as its
// soft limit; the rest is for goroutine stacks, the runtime and the kernel's
// view of memory that the collector has freed but not yet returned.
const limitShare = 0.8

// Settings is what Apply decided, for the startup log.
type Settings struct {
	Percent       int    // the GOGC in effect (-1: off)
	PercentSource string // "GOGC" or "default"
	Limit         int64  // the soft memory limit in bytes (math.MaxInt64: none)
	LimitSource   string // "GOMEMLIMIT", "cgroup <file>" or "none"
}

// Apply sets the collector for a server process. getenv is os.Getenv outside
// tests; cgroupLimit returns the memory limit of the process's cgroup and the
// file it came from (ok false when there is none).
func Apply(getenv func(string) string, cgroupLimit func() (limit int64, file string, ok bool)) Settings {
	var s Settings
	if v := getenv("GOGC"); v != "" {
		// The runtime has already applied it; read it back without changing it.
		s.Percent = debug.SetGCPercent(-1)
		debug.SetGCPercent(s.Percent)
		s.PercentSource = "GOGC"
	} else {
		debug.SetGCPercent(DefaultPercent)
		s.Percent, s.PercentSource = DefaultPercent, "default"
	}
	switch limit, file, ok := cgroupLimit(); {
	case getenv("GOMEMLIMIT") != "":
		s.Limit, s.LimitSource = debug.SetMemoryLimit(-1), "GOMEMLIMIT"
	case ok:
		s.Limit = int64(float64(limit) * limitShare)
		debug.SetMemoryLimit(s.Limit)
		s.LimitSource = "cgroup " + file
	default:
		s.Limit, s.LimitSource = debug.SetMemoryLimit(-1), "none"
	}
	return s
}

// LimitString formats the limit for the startup log.
func (s Settings) LimitString() string {
	if s.Limit == math.MaxInt64 {
		return "none"
	}
	return fmt.Sprintf("%d MiB", s.Limit>>20)
}

// CgroupLimit reads the memory limit of the process's cgroup: cgroup v2's
// memory.max, else cgroup v1's memory.limit_in_bytes. Inside a container the
// cgroup namespace makes these the container's own limit. There is none
// outside Linux, on a host without cgroups, or when the file says "max" (or,
// for v1, a value too large to be a real limit).
func CgroupLimit() (int64, string, bool) {
	for _, f := range []string{"/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		if n, ok := parseLimit(string(b)); ok {
			return n, f, true
		}
		return 0, "", false
	}
	return 0, "", false
}

// parseLimit reads a cgroup memory limit file's content. v1 writes "no limit"
// as the largest page-aligned int64; anything from 1<<60 up is treated so.
func parseLimit(s string) (int64, bool) {
	s = strings.TrimSpace(s)
	if s == "" || s == "max" {
		return 0, false
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n >= 1<<60 {
		return 0, false
	}
	return n, true
}
