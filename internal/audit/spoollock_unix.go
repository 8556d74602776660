//go:build unix

package audit

import (
	"os"
	"syscall"
)

// lockSpool takes an exclusive, non-blocking advisory lock on f so that two
// writers never share one spool. The kernel drops the lock when the process
// dies, so a writer killed with -9 does not leave a stale lock behind.
func lockSpool(f *os.File) error {
	return syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
}
