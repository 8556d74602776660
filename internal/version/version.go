// Package version holds the build's version, set by the Makefile with -ldflags.
package version

import "runtime/debug"

// Version is overridden at link time: -X github.com/modgate/modgate/internal/version.Version=v1.2.3
var Version = "dev"

// String returns the version with the VCS revision when the binary knows it.
func String() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return Version + " (" + s.Value[:12] + ")"
			}
		}
	}
	return Version
}
