package audit

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5/pgtype"
)

// MaintainPartitions creates the monthly partitions of audit_events for the current
// month and the next three, and, when retention is positive, drops partitions that
// ended more than retention ago (recording each chain's last dropped link so Verify
// can still check what remains). It returns what it did, one line per partition.
func MaintainPartitions(ctx context.Context, db DB, retention time.Duration) ([]string, error) {
	var ret any // NULL: keep everything
	if retention > 0 {
		ret = pgtype.Interval{Microseconds: retention.Microseconds(), Valid: true}
	}
	rows, err := db.Query(ctx, `SELECT audit_maintain_partitions(3, $1)`, ret)
	if err != nil {
		return nil, fmt.Errorf("audit: maintaining partitions: %w", err)
	}
	defer rows.Close()
	var done []string
	for rows.Next() {
		var s string
		if err := rows.Scan(&s); err != nil {
			return done, err
		}
		done = append(done, s)
	}
	if err := rows.Err(); err != nil {
		return done, fmt.Errorf("audit: maintaining partitions: %w", err)
	}
	return done, nil
}

func (w *Writer) maintainLoop() {
	defer close(w.maintDone)
	t := time.NewTimer(0)
	defer t.Stop()
	for {
		select {
		case <-w.maintStop:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		done, err := MaintainPartitions(ctx, w.pool, w.cfg.Retention)
		cancel()
		if err != nil {
			w.log.Warn("audit partition maintenance failed", "err", err)
			t.Reset(time.Minute)
			continue
		}
		for _, d := range done {
			w.log.Info("audit partition maintenance", "action", d)
		}
		t.Reset(w.cfg.MaintenanceInterval)
	}
}
