package audit

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// shipper tails the spool, oldest segment first, and inserts its rows into
// PostgreSQL in batches, with up to ShipWorkers batches in flight so that inserting
// overlaps reading and PostgreSQL can use more than one core. A segment is deleted
// once every batch up to the one that finished reading it is committed. Rows are
// inserted idempotently whenever they may already be there (segments from an earlier
// run, or a retry after a failure whose commit outcome is unknown), so replay is
// exactly-once in the table.
type shipper struct {
	w      *Writer
	segID  int64 // segment being read
	fr     *frameReader
	rows   []*Row  // read, not yet handed to a worker
	done   []int64 // segments fully read, not yet handed to a worker
	dedupe bool    // the rows being read may already be in the table
}

// shipBatch is one insert in flight.
type shipBatch struct {
	rows     []*Row
	done     []int64 // segments to delete once this and every earlier batch is in
	dedupe   bool
	ok       bool          // set before finished is closed
	finished chan struct{} // closed when the worker gives up or succeeds
}

func (w *Writer) shipLoop() {
	defer close(w.shipDone)
	s := &shipper{w: w}
	defer func() {
		if s.fr != nil {
			s.fr.Close()
		}
	}()
	var inflight []*shipBatch
	var lastShip time.Time
	heartbeat := time.NewTicker(time.Minute)
	defer heartbeat.Stop()
	for {
		// Retire finished batches in order; a failed one means we are stopping.
		for len(inflight) > 0 && isClosed(inflight[0].finished) {
			if !inflight[0].ok {
				for _, b := range inflight {
					<-b.finished
				}
				return
			}
			s.removeSegments(inflight[0].done)
			inflight = inflight[1:]
		}
		if len(inflight) >= w.cfg.ShipWorkers {
			<-inflight[0].finished // workers watch stopShip themselves
			continue
		}
		if err := s.fill(); err != nil {
			w.log.Error("audit spool read failed", "err", err)
		}
		// Rows in hand are already durable in the spool, so a short wait costs
		// only lag, and PostgreSQL takes one insert per ShipDelay instead of one
		// per group commit. A drain or stop ships at once.
		if len(s.rows) > 0 && len(s.rows) < w.cfg.BatchSize && !isClosed(w.drain) && !isClosed(w.stopShip) {
			if wait := w.cfg.ShipDelay - time.Since(lastShip); wait > 0 {
				t := time.NewTimer(wait)
				select {
				case <-t.C:
				case <-w.drain:
				case <-w.stopShip:
				}
				t.Stop()
				continue
			}
		}
		if len(s.rows) > 0 || len(s.done) > 0 {
			if len(s.rows) > 0 {
				lastShip = time.Now()
			}
			b := &shipBatch{rows: s.rows, done: s.done, dedupe: s.dedupe, finished: make(chan struct{})}
			s.rows, s.done, s.dedupe = nil, nil, false
			inflight = append(inflight, b)
			go w.insertBatch(b)
			continue
		}
		if len(inflight) > 0 {
			select {
			case <-inflight[0].finished:
			case <-w.shipKick:
			}
			continue
		}
		select {
		case <-w.drain:
			// The committer has stopped and fill found nothing more: drained.
			return
		case <-w.stopShip:
			return
		case <-w.shipKick:
		case <-heartbeat.C:
			w.logHead()
		}
	}
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// insertBatch inserts b, retrying with backoff until it succeeds or Close gives up.
func (w *Writer) insertBatch(b *shipBatch) {
	defer close(b.finished)
	if len(b.rows) == 0 {
		b.ok = true
		return
	}
	backoff := 50 * time.Millisecond
	for {
		ctx, cancel := context.WithTimeout(w.shipCtx, w.cfg.InsertTimeout)
		start := time.Now()
		n, err := insertRows(ctx, w.pool, b.rows, b.dedupe)
		cancel()
		if isPermanent(err) {
			n, err = w.isolate(b.rows)
		}
		if w.shipCtx.Err() != nil {
			return // Close gave up; the rows stay in the spool
		}
		if err == nil {
			w.m.writeLatency.Observe(time.Since(start).Seconds())
			w.m.written.Add(float64(n))
			w.unshipped.Add(-int64(len(b.rows)))
			w.lastShip.Store(time.Now().UnixNano())
			w.pgOK.Store(true)
			b.ok = true
			return
		}
		w.pgOK.Store(false)
		w.m.failures.WithLabelValues("postgres").Inc()
		w.log.Warn("audit insert failed; will retry", "rows", len(b.rows), "err", err, "retry_in", backoff)
		b.dedupe = true // the commit may have happened
		select {
		case <-time.After(backoff):
		case <-w.stopShip:
			return
		}
		backoff = min(backoff*2, 5*time.Second)
	}
}

// removeSegments deletes shipped segments.
func (s *shipper) removeSegments(ids []int64) {
	w := s.w
	for _, id := range ids {
		name := segmentName(w.cfg.SpoolDir, id)
		if st, err := os.Stat(name); err == nil {
			if err := os.Remove(name); err != nil {
				w.log.Error("audit spool: cannot remove shipped segment", "segment", id, "err", err)
				continue
			}
			w.spoolBytes.Add(-st.Size())
		}
		w.posMu.Lock()
		delete(w.sealed, id)
		w.posMu.Unlock()
	}
}

// logHead puts the chain head in the log now and then: an anchor outside the
// database that a wholesale rewrite of the table cannot also rewrite.
func (w *Writer) logHead() {
	if h := w.headSnap.Load(); h != nil {
		w.log.Info("audit chain head", "chain", h.ChainID, "seq", h.Seq, "hash", hex.EncodeToString(h.Hash),
			"unshipped", w.unshipped.Load(), "spool_bytes", w.spoolBytes.Load())
	}
}

// limit returns how far segment id may be read: its durable length, or -1 (to the
// end of the file) for a segment left by an earlier run.
func (s *shipper) limit(id int64) (limit int64, active bool) {
	w := s.w
	w.posMu.Lock()
	defer w.posMu.Unlock()
	if id < w.firstRunID {
		return -1, false
	}
	if n, ok := w.sealed[id]; ok {
		return n, false
	}
	if id == w.activeID && !w.noActive {
		return w.activeEnd, true
	}
	return 0, false // not created yet
}

// fill reads rows from the spool until BatchSize rows are pending or nothing more is
// durable.
func (s *shipper) fill() error {
	w := s.w
	for len(s.rows) < w.cfg.BatchSize {
		if s.fr == nil {
			id, ok, err := s.nextSegment()
			if err != nil || !ok {
				return err
			}
			fr, err := openFrameReader(segmentName(w.cfg.SpoolDir, id))
			if err != nil {
				return err
			}
			s.segID, s.fr = id, fr
		}
		limit, active := s.limit(s.segID)
		s.fr.limit = limit
		if rows, ok := s.takeHandoff(); ok {
			for i := range rows {
				s.rows = append(s.rows, &rows[i])
			}
			continue
		}
		e, err := s.fr.next()
		switch {
		case err == nil:
			if e.Row != nil {
				s.rows = append(s.rows, e.Row)
				if s.segID < w.firstRunID {
					s.dedupe = true // replaying an earlier run: some rows may be in already
				}
			}
			continue
		case err == io.EOF && active:
			return nil // wait for the committer
		case err == io.EOF || err == errTorn:
			if err == errTorn {
				w.log.Warn("audit spool: ignoring torn tail", "segment", s.segID, "offset", s.fr.off)
			}
			s.fr.Close()
			s.fr = nil
			s.done = append(s.done, s.segID)
			continue
		default:
			return err
		}
	}
	return nil
}

// takeHandoff returns the committed rows that start exactly where the reader
// stands, from memory, and moves the reader past their frames: the spool holds
// them durably, and decoding them back from it would cost more than writing
// them did. Handoffs the reader has already passed (read from the file, after
// the memory queue overflowed) are dropped.
func (s *shipper) takeHandoff() ([]Row, bool) {
	w := s.w
	w.posMu.Lock()
	defer w.posMu.Unlock()
	for len(w.handoff) > 0 {
		h := w.handoff[0]
		if h.seg > s.segID || h.seg == s.segID && h.start > s.fr.off {
			return nil, false // not reached yet: read the file up to it
		}
		w.handoff[0] = handoff{}
		w.handoff = w.handoff[1:]
		w.handoffRows -= len(h.rows)
		if h.seg == s.segID && h.start == s.fr.off {
			s.fr.skipTo(h.end)
			return h.rows, true
		}
	}
	return nil, false
}

// nextSegment returns the oldest segment after the one last read.
func (s *shipper) nextSegment() (int64, bool, error) {
	ids, err := listSegments(s.w.cfg.SpoolDir)
	if err != nil {
		return 0, false, err
	}
	for _, id := range ids {
		if id > s.segID {
			if lim, active := s.limit(id); lim == 0 && !active {
				return 0, false, nil // created but nothing durable in it yet
			}
			return id, true, nil
		}
	}
	return 0, false, nil
}

// isPermanent reports an insert error that retrying cannot fix: the data itself is
// refused (SQLSTATE class 22, data exception, or 23, integrity violation).
func isPermanent(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && (strings.HasPrefix(pgErr.Code, "22") || strings.HasPrefix(pgErr.Code, "23"))
}

// isolate inserts the pending rows one by one so that a row PostgreSQL refuses does
// not block the spool forever. Refused rows are appended to SpoolDir/rejected.jsonl
// (fsync'd) for an operator, logged, and counted as failures.
func (w *Writer) isolate(rows []*Row) (int64, error) {
	var total int64
	for _, r := range rows {
		ctx, cancel := context.WithTimeout(w.shipCtx, w.cfg.InsertTimeout)
		n, err := insertRows(ctx, w.pool, []*Row{r}, true)
		cancel()
		if err == nil {
			total += n
			continue
		}
		if !isPermanent(err) {
			return total, err
		}
		w.m.failures.WithLabelValues("rejected").Inc()
		w.log.Error("audit row refused by PostgreSQL; kept in rejected.jsonl", "event_id", r.EventID, "err", err)
		if qerr := appendRejected(w.cfg.SpoolDir, r); qerr != nil {
			return total, fmt.Errorf("keeping refused row: %w (refused: %v)", qerr, err)
		}
	}
	return total, nil
}

func appendRejected(dir string, r *Row) error {
	f, err := os.OpenFile(filepath.Join(dir, "rejected.jsonl"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return err
	}
	b, err := appendJSON(nil, r)
	if err == nil {
		_, err = f.Write(append(b, '\n'))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// columns are audit_events' columns in the order rows are copied (appendCopyRow).
var columns = []string{
	"event_id", "time", "request_id", "decision_id", "subject", "teams", "auth_method",
	"client_addr", "cert_fingerprint", "action", "module", "version", "outcome", "status",
	"reason", "source", "bytes", "duration_ms", "user_agent", "replica", "content_hash",
	"chain_id", "seq", "prev_hash", "hash",
}

// insertRows writes rows and returns how many were new. The fast path COPYs straight
// into audit_events; when the rows may already be there (dedupe), or the fast path
// hits the unique key, it COPYs into a temporary table and inserts with ON CONFLICT
// DO NOTHING on (event_id, time).
func insertRows(ctx context.Context, pool *pgxpool.Pool, rows []*Row, dedupe bool) (int64, error) {
	if !dedupe {
		var n int64
		err := pool.AcquireFunc(ctx, func(c *pgxpool.Conn) error {
			var err error
			n, err = copyRows(ctx, c.Conn().PgConn(), "audit_events", rows)
			return err
		})
		var pgErr *pgconn.PgError
		if err == nil || !errors.As(err, &pgErr) || pgErr.Code != "23505" {
			return n, err
		}
	}
	var n int64
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `CREATE TEMP TABLE audit_stage ON COMMIT DROP AS
			SELECT `+columnList+` FROM audit_events WITH NO DATA`); err != nil {
			return err
		}
		if _, err := copyRows(ctx, tx.Conn().PgConn(), "audit_stage", rows); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `INSERT INTO audit_events (`+columnList+`)
			SELECT `+columnList+` FROM audit_stage ORDER BY chain_id, seq
			ON CONFLICT (event_id, time) DO NOTHING`)
		n = tag.RowsAffected()
		return err
	})
	return n, err
}

var columnList = strings.Join(columns, ", ")
