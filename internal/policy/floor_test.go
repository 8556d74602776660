package policy

import (
	"context"
	"testing"
)

func BenchmarkFloor(b *testing.B) {
	dir := b.TempDir()
	writeFile(b, dir, "authz.rego", `package modgate.authz
decision := {"allow": true, "reasons": ["x"]}
`)
	e := loadEngine(b, dir, Options{CacheSize: -1})
	in := pull(member("a", "payments"), ActionZip, RoutePublic, "github.com/pkg/errors", "v1.0.0")
	b.ReportAllocs()
	cpu := processCPU()
	n := 0
	defer func() { reportCPU(b, cpu, n) }()
	for b.Loop() {
		n++
		if _, err := e.Decide(context.Background(), in); err != nil {
			b.Fatal(err)
		}
	}
}
