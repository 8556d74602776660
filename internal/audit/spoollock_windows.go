//go:build windows

package audit

import (
	"os"

	"golang.org/x/sys/windows"
)

// lockSpool takes an exclusive, non-blocking lock on the first byte of f
// (LockFileEx), the Windows counterpart of flock: held until the handle is
// closed or the process exits.
func lockSpool(f *os.File) error {
	ol := new(windows.Overlapped)
	return windows.LockFileEx(windows.Handle(f.Fd()),
		windows.LOCKFILE_EXCLUSIVE_LOCK|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, ol)
}
