package database

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/modgate/modgate/internal/derrors"
)

// Unreachable reports whether err says PostgreSQL could not be asked: no
// connection, a connection lost or shut down under the query, a closed pool, a
// query timed out. PostgreSQL answering with an ordinary error, no rows, or the
// caller giving up are not unreachability.
func Unreachable(err error) bool {
	if err == nil || errors.Is(err, context.Canceled) {
		return false
	}
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) {
		// Class 08: connection exception; 57: operator intervention (the
		// server shutting down, crashed, or not yet accepting connections).
		return strings.HasPrefix(pgErr.Code, "08") || strings.HasPrefix(pgErr.Code, "57")
	}
	var connErr *pgconn.ConnectError
	var netErr net.Error
	return errors.As(err, &connErr) ||
		errors.As(err, &netErr) ||
		errors.Is(err, pgconn.ErrConnClosed) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, context.DeadlineExceeded) ||
		pgconn.Timeout(err) ||
		// pgxpool's error for a pool closed under the caller is not exported.
		strings.Contains(err.Error(), "closed pool")
}

// TimedOut reports whether err is PostgreSQL cancelling a statement that ran
// past its statement_timeout (SQLSTATE 57014, query_canceled): the database is
// there but too slow, and the statement had no effect. Unreachable is true for
// it too.
func TimedOut(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == "57014"
}

// Why is the public reason for an error Unreachable accepts: the database did
// not answer in time (TimedOut), or could not be reached.
func Why(err error) string {
	if TimedOut(err) {
		return "modgate's database did not answer in time; try again"
	}
	return "modgate's database is unreachable; try again when it is back"
}

// MarkUnavailable turns *errp, if it says PostgreSQL could not be asked, into a
// 503 whose one public line is "<doing>: modgate's database is unreachable; try
// again when it is back" (or "... did not answer in time; try again" for a
// statement cancelled by statement_timeout), keeping the cause for the log. It
// is where database failures become statuses; use it deferred in every
// operation that cannot work without the database:
//
//	defer database.MarkUnavailable(&err, "cannot publish %s@%s now", mod, v)
func MarkUnavailable(errp *error, doing string, args ...any) {
	if !Unreachable(*errp) {
		return
	}
	*errp = derrors.WithCause(derrors.Unavailable, *errp, "%s: %s", fmt.Sprintf(doing, args...), Why(*errp))
}
