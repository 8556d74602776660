// Package derrors defines the error kinds modgate's packages return and the one
// table that maps them to HTTP statuses.
//
// Domain packages wrap causes with a kind and a one-line public message; the HTTP
// layer writes the public message to the client (the go command prints it as
// "server response: ...") and logs the full cause. Internals — file paths, SQL,
// upstream URLs, credentials — live only in the cause, never in the public message.
package derrors

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
)

// Kinds. Compare with errors.Is.
var (
	InvalidArgument  = errors.New("invalid argument")      // 400
	Unauthenticated  = errors.New("unauthenticated")       // 401
	PermissionDenied = errors.New("permission denied")     // 403
	NotFound         = errors.New("not found")             // 404
	MethodNotAllowed = errors.New("method not allowed")    // 405
	Conflict         = errors.New("conflict")              // 409
	Gone             = errors.New("gone")                  // 410
	TooLarge         = errors.New("too large")             // 413
	RateLimited      = errors.New("too many requests")     // 429
	BadUpstream      = errors.New("bad upstream response") // 502
	// Integrity: a source offered bytes for a version that differ from the ones
	// already recorded for it (a moved git tag, a force-push). 502 like any other
	// bad answer from behind the proxy: the client did nothing wrong, and a 4xx
	// would make the go command treat the version as absent and try elsewhere.
	Integrity       = errors.New("integrity failure") // 502
	Unavailable     = errors.New("unavailable")       // 503
	UpstreamTimeout = errors.New("upstream timeout")  // 504
)

var statuses = []struct {
	kind   error
	status int
}{
	{InvalidArgument, http.StatusBadRequest},
	{Unauthenticated, http.StatusUnauthorized},
	{PermissionDenied, http.StatusForbidden},
	{NotFound, http.StatusNotFound},
	{MethodNotAllowed, http.StatusMethodNotAllowed},
	{Conflict, http.StatusConflict},
	{Gone, http.StatusGone},
	{TooLarge, http.StatusRequestEntityTooLarge},
	{RateLimited, http.StatusTooManyRequests},
	{BadUpstream, http.StatusBadGateway},
	{Integrity, http.StatusBadGateway},
	{Unavailable, http.StatusServiceUnavailable},
	{UpstreamTimeout, http.StatusGatewayTimeout},
}

// Error carries a kind, a message safe to show the client, and the internal cause.
type Error struct {
	Kind   error  // one of the kinds above
	Public string // one line for the client; empty means the kind's own text
	Cause  error  // for the log; may be nil
}

func (e *Error) Error() string {
	msg := e.Public
	if msg == "" {
		msg = e.Kind.Error()
	}
	if e.Cause != nil {
		return msg + ": " + e.Cause.Error()
	}
	return msg
}

// Is lets errors.Is(err, derrors.NotFound) see through an *Error.
func (e *Error) Is(target error) bool { return e.Kind == target }

func (e *Error) Unwrap() error { return e.Cause }

// New returns an error of the given kind whose public message is formatted from
// format and args. The message must be safe to show to any client.
func New(kind error, format string, args ...any) error {
	return &Error{Kind: kind, Public: fmt.Sprintf(format, args...)}
}

// WithCause is New with an internal cause that is logged but never shown.
func WithCause(kind error, cause error, format string, args ...any) error {
	return &Error{Kind: kind, Public: fmt.Sprintf(format, args...), Cause: cause}
}

// Wrap adds context to *errp, if non-nil, keeping its kind and public message.
// Use as: defer derrors.Wrap(&err, "Fetch(%q)", path).
func Wrap(errp *error, format string, args ...any) {
	if *errp != nil {
		*errp = fmt.Errorf("%s: %w", fmt.Sprintf(format, args...), *errp)
	}
}

// Status maps an error to an HTTP status; unknown errors are 500. The kind is
// the outermost *Error's, the one whose message PublicMessage sends: a kind
// deeper in the chain is a cause that the outer error has already judged (a
// store's not-found inside "the database is unreachable" is a 503, not a 404).
// A bare kind, wrapped with %w only, counts where it is.
func Status(err error) int {
	if err == nil {
		return http.StatusOK
	}
	var e *Error
	if errors.As(err, &e) {
		err = e.Kind
	}
	for _, s := range statuses {
		if errors.Is(err, s.kind) {
			return s.status
		}
	}
	return http.StatusInternalServerError
}

// PublicMessage returns the one line to send to the client: the first public
// message in the chain, else the kind's text, else "internal error". Newlines are
// folded so the go command prints exactly one line.
func PublicMessage(err error) string {
	var e *Error
	msg := "internal error"
	if errors.As(err, &e) {
		msg = e.Public
		if msg == "" {
			msg = e.Kind.Error()
		}
	} else {
		for _, s := range statuses {
			if errors.Is(err, s.kind) {
				msg = s.kind.Error()
				break
			}
		}
	}
	return strings.Join(strings.Fields(msg), " ")
}
