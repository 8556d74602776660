package cache

import (
	"errors"
	"syscall"

	"github.com/modgate/modgate/internal/derrors"
)

// storageError turns a failure of the local scratch space into a 503 with a reason
// an operator recognises, instead of an anonymous 500: a full or read-only cache
// volume is an outage of this replica, not a bug, and the client may retry
// elsewhere.
func storageError(err error) error {
	switch {
	case errors.Is(err, syscall.ENOSPC), errors.Is(err, syscall.EDQUOT):
		return derrors.WithCause(derrors.Unavailable, err, "modgate's cache storage is full; try again later")
	case errors.Is(err, syscall.EROFS), errors.Is(err, syscall.EACCES), errors.Is(err, syscall.EPERM):
		return derrors.WithCause(derrors.Unavailable, err, "modgate's cache storage is not writable; try again later")
	}
	return derrors.WithCause(derrors.Unavailable, err, "modgate's cache storage failed; try again later")
}
