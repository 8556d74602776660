//go:build !unix

package storage

// FilesystemUsage is not reported on this platform.
func FilesystemUsage(dir string) (size, free uint64, ok bool) { return 0, 0, false }
