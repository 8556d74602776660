package policy

import (
	"syscall"
	"testing"
	"time"
)

// processCPU returns the CPU time (user + system) the test process has used.
// Benchmarks report it per operation beside wall time: on a shared machine the
// wall time includes waiting for a CPU, the CPU time does not.
func processCPU() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// reportCPU reports the CPU time per operation since start.
func reportCPU(b *testing.B, start time.Duration, ops int) {
	if ops > 0 {
		b.ReportMetric(float64((processCPU()-start).Nanoseconds())/float64(ops), "cpu-ns/op")
	}
}
