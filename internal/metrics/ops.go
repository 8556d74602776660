package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// CertificateExpiry reports when a certificate expires, read at every scrape so a
// reloaded certificate shows at once: modgate_tls_certificate_expiry_timestamp_seconds
// {certificate=name}. notAfter returns the zero time when there is none (no
// sample then).
func CertificateExpiry(name string, notAfter func() time.Time) prometheus.Collector {
	return &expiry{
		desc: prometheus.NewDesc("modgate_tls_certificate_expiry_timestamp_seconds",
			"When a certificate modgate presents or trusts expires (NotAfter), as a Unix time.",
			nil, prometheus.Labels{"certificate": name}),
		notAfter: notAfter,
	}
}

type expiry struct {
	desc     *prometheus.Desc
	notAfter func() time.Time
}

func (e *expiry) Describe(ch chan<- *prometheus.Desc) { ch <- e.desc }

func (e *expiry) Collect(ch chan<- prometheus.Metric) {
	if t := e.notAfter(); !t.IsZero() {
		ch <- prometheus.MustNewConstMetric(e.desc, prometheus.GaugeValue, float64(t.Unix()))
	}
}

// Filesystem reports the size and free space of the filesystem holding the cache
// directory (modgate_cache_filesystem_size_bytes, _free_bytes), read at every
// scrape; usage returns ok false where it cannot tell (no samples then).
func Filesystem(usage func() (size, free uint64, ok bool)) prometheus.Collector {
	return &filesystem{
		size: prometheus.NewDesc("modgate_cache_filesystem_size_bytes",
			"Size of the filesystem holding cache.dir.", nil, nil),
		free: prometheus.NewDesc("modgate_cache_filesystem_free_bytes",
			"Bytes available to modgate on the filesystem holding cache.dir.", nil, nil),
		usage: usage,
	}
}

type filesystem struct {
	size, free *prometheus.Desc
	usage      func() (size, free uint64, ok bool)
}

func (f *filesystem) Describe(ch chan<- *prometheus.Desc) { ch <- f.size; ch <- f.free }

func (f *filesystem) Collect(ch chan<- prometheus.Metric) {
	size, free, ok := f.usage()
	if !ok {
		return
	}
	ch <- prometheus.MustNewConstMetric(f.size, prometheus.GaugeValue, float64(size))
	ch <- prometheus.MustNewConstMetric(f.free, prometheus.GaugeValue, float64(free))
}
