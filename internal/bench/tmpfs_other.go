//go:build !linux

package bench

// DefaultModCacheDir returns "" (the work directory): outside Linux there is no
// tmpfs known to be mounted. See the Linux version.
func DefaultModCacheDir() string { return "" }
