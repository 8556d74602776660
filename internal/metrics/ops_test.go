package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCertificateExpiry(t *testing.T) {
	t.Parallel()
	notAfter := time.Unix(1900000000, 0)
	reg := prometheus.NewRegistry()
	reg.MustRegister(CertificateExpiry("server", func() time.Time { return notAfter }),
		CertificateExpiry("none", func() time.Time { return time.Time{} }))
	want := `
# HELP modgate_tls_certificate_expiry_timestamp_seconds When a certificate modgate presents or trusts expires (NotAfter), as a Unix time.
# TYPE modgate_tls_certificate_expiry_timestamp_seconds gauge
modgate_tls_certificate_expiry_timestamp_seconds{certificate="server"} 1.9e+09
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

func TestFilesystem(t *testing.T) {
	t.Parallel()
	ok := true
	reg := prometheus.NewRegistry()
	reg.MustRegister(Filesystem(func() (uint64, uint64, bool) { return 1000, 250, ok }))
	want := `
# HELP modgate_cache_filesystem_free_bytes Bytes available to modgate on the filesystem holding cache.dir.
# TYPE modgate_cache_filesystem_free_bytes gauge
modgate_cache_filesystem_free_bytes 250
# HELP modgate_cache_filesystem_size_bytes Size of the filesystem holding cache.dir.
# TYPE modgate_cache_filesystem_size_bytes gauge
modgate_cache_filesystem_size_bytes 1000
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	ok = false
	if n, err := testutil.GatherAndCount(reg); err != nil || n != 0 {
		t.Errorf("unknown usage: %d samples, %v; want none", n, err)
	}
}
