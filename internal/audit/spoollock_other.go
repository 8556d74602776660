//go:build !unix && !windows

package audit

import (
	"errors"
	"os"
)

// lockSpool: no file locking on this platform, so the spool (a server-only
// piece) is refused rather than shared unsafely.
func lockSpool(*os.File) error {
	return errors.New("audit spool locking is not supported on this platform")
}
