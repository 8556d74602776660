package database_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/testing/pgtest"
)

func TestUnreachable(t *testing.T) {
	t.Parallel()
	closed := pgtest.Pool(t, pgtest.NewDatabase(t))
	closed.Close()
	_, closedErr := closed.Exec(context.Background(), "SELECT 1")
	_, connErr := pgx.Connect(context.Background(), "postgres://postgres@127.0.0.1:1/x?sslmode=disable&connect_timeout=2")
	tests := []struct {
		name string
		err  error
		want bool
	}{
		{"ok/closed-pool", closedErr, true},
		{"ok/connection-refused", connErr, true},
		{"ok/admin-shutdown", fmt.Errorf("query: %w", &pgconn.PgError{Code: "57P01"}), true},
		{"ok/connection-exception", &pgconn.PgError{Code: "08006"}, true},
		{"ok/unexpected-eof", fmt.Errorf("reading: %w", io.ErrUnexpectedEOF), true},
		{"ok/deadline", context.DeadlineExceeded, true},
		{"fail/nil", nil, false},
		{"fail/unique-violation", &pgconn.PgError{Code: "23505"}, false},
		{"fail/no-rows", pgx.ErrNoRows, false},
		{"fail/caller-gone", context.Canceled, false},
		{"fail/other", errors.New("disk full"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			if tt.want && tt.err == nil {
				t.Fatal("no error to classify")
			}
			if got := database.Unreachable(tt.err); got != tt.want {
				t.Errorf("Unreachable(%v) = %v, want %v", tt.err, got, tt.want)
			}
			err := tt.err
			database.MarkUnavailable(&err, "cannot %s now", "test")
			wantStatus := derrors.Status(tt.err)
			if tt.want {
				wantStatus = http.StatusServiceUnavailable
			}
			if derrors.Status(err) != wantStatus {
				t.Errorf("MarkUnavailable: status %d, want %d", derrors.Status(err), wantStatus)
			}
			if tt.want && derrors.PublicMessage(err) != "cannot test now: modgate's database is unreachable; try again when it is back" {
				t.Errorf("MarkUnavailable: public message %q", derrors.PublicMessage(err))
			}
		})
	}
}
