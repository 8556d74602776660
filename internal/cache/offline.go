package cache

import "errors"

// sourceUnavailable reports whether a Fetch error says that no source could be
// asked at all (modgate in offline mode) rather than that the object does not
// exist. Such a not-found is not remembered in the negative cache — an object
// imported from a bundle a moment later must be served at once — and a stored
// copy of a mutable object (a list) is served as it is instead of being refused.
//
// The error says so by implementing SourceUnavailable() bool somewhere in its
// chain, so the cache need not import the sources that produce it.
func sourceUnavailable(err error) bool {
	var su interface{ SourceUnavailable() bool }
	return errors.As(err, &su) && su.SourceUnavailable()
}
