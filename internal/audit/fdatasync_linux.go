//go:build linux

package audit

import (
	"os"
	"syscall"
)

// fdatasync flushes f's data (not its metadata, which a preallocated segment
// does not change) to stable storage.
func fdatasync(f *os.File) error {
	for {
		err := syscall.Fdatasync(int(f.Fd()))
		if err != syscall.EINTR {
			return err
		}
	}
}
