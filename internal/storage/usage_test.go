//go:build unix

package storage

import "testing"

func TestFilesystemUsage(t *testing.T) {
	t.Parallel()
	size, free, ok := FilesystemUsage(t.TempDir())
	if !ok || size == 0 || free > size {
		t.Errorf("FilesystemUsage = %d, %d, %v; want a size and free <= size", size, free, ok)
	}
	if _, _, ok := FilesystemUsage("/nonexistent/modgate"); ok {
		t.Error("FilesystemUsage of a missing directory reported ok")
	}
}
