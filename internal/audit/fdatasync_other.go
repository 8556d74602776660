//go:build !linux

package audit

import "os"

// fdatasync is f.Sync where the system has no fdatasync (macOS, Windows): the
// spool is a server piece, and there a full sync is the portable way to the disk.
func fdatasync(f *os.File) error { return f.Sync() }
