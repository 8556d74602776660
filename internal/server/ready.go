package server

import "fmt"

// DegradedError is what a readiness check returns when a dependency is down but
// the replica still serves: /readyz stays 200 and names what is degraded, so a
// load balancer keeps the replica while operators see the state. A plain error
// from a check means the replica cannot serve, and makes /readyz 503.
type DegradedError struct {
	Reason string
}

func (e *DegradedError) Error() string { return "degraded: " + e.Reason }

// Degraded returns a *DegradedError with the formatted reason.
func Degraded(format string, args ...any) error {
	return &DegradedError{Reason: fmt.Sprintf(format, args...)}
}
