//go:build unix

package storage

import "syscall"

// FilesystemUsage returns the size of the filesystem holding dir and the bytes
// available to an unprivileged writer on it.
func FilesystemUsage(dir string) (size, free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, 0, false
	}
	return uint64(st.Blocks) * uint64(st.Bsize), uint64(st.Bavail) * uint64(st.Bsize), true
}
