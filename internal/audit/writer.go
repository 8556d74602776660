package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/modgate/modgate/internal/derrors"
)

// WriterConfig configures a Writer.
type WriterConfig struct {
	// WriterID names this writer's hash chain. It must be stable across restarts and
	// unique among replicas sharing the database (the replica name is a good choice).
	WriterID string
	// Replica is stored in every row; defaults to WriterID.
	Replica string
	// SpoolDir holds the spool on local disk. One writer per directory (it is locked).
	SpoolDir string
	// BatchSize caps the rows per PostgreSQL insert. Default 5000.
	BatchSize int
	// ShipWorkers is how many batch inserts may run at once. Default 2.
	ShipWorkers int
	// ShipDelay is how long the shipper lets rows gather after starting an insert
	// before it starts another with fewer than BatchSize rows. Default 100ms;
	// negative ships at once.
	ShipDelay time.Duration
	// SegmentBytes is the size at which a spool segment is closed and a new one
	// started; shipped segments are deleted whole. Default 8 MiB.
	SegmentBytes int64
	// MaxSpoolBytes caps the spool. Past it (a long PostgreSQL outage) events are
	// written straight to PostgreSQL if it answers, else refused. Default 1 GiB.
	MaxSpoolBytes int64
	// InsertTimeout bounds one batch insert. Default 30s.
	InsertTimeout time.Duration
	// Retention, when positive, drops monthly partitions that ended longer ago than
	// this. Zero keeps everything.
	Retention time.Duration
	// MaintenanceInterval is how often partitions are created ahead and retention is
	// applied. Default 6h; negative disables it (tests, or a cron elsewhere).
	MaintenanceInterval time.Duration
}

func (c WriterConfig) withDefaults() WriterConfig {
	if c.Replica == "" {
		c.Replica = c.WriterID
	}
	if c.BatchSize <= 0 {
		c.BatchSize = 5000
	}
	if c.ShipWorkers <= 0 {
		c.ShipWorkers = 2
	}
	if c.ShipDelay == 0 {
		c.ShipDelay = 100 * time.Millisecond
	}
	if c.SegmentBytes <= 0 {
		c.SegmentBytes = 8 << 20
	}
	if c.MaxSpoolBytes <= 0 {
		c.MaxSpoolBytes = 1 << 30
	}
	if c.InsertTimeout <= 0 {
		c.InsertTimeout = 30 * time.Second
	}
	if c.MaintenanceInterval == 0 {
		c.MaintenanceInterval = 6 * time.Hour
	}
	return c
}

// Validate reports a configuration the writer cannot run with.
func (c WriterConfig) Validate() error {
	switch {
	case c.WriterID == "":
		return errors.New("audit: writer id is required")
	case len(c.WriterID) > 200:
		return errors.New("audit: writer id longer than 200 bytes")
	case c.SpoolDir == "":
		return errors.New("audit: spool directory is required")
	case c.Retention < 0:
		return errors.New("audit: negative retention")
	}
	return nil
}

// Writer records audit events durably: Record returns nil only once the event is
// fsync'd in the local spool (or, when the spool cannot take it, committed in
// PostgreSQL). A background shipper moves spooled events into PostgreSQL.
//
// Why spool every event rather than queue in memory and spool only on failure: an
// event acknowledged to the request must survive kill -9, and only a write that has
// reached the disk does. Group commit makes that cheap: while one fsync runs, every
// concurrent Record joins the next batch, so a busy server pays one fsync per batch,
// not per event, and requests never wait on PostgreSQL.
type Writer struct {
	cfg  WriterConfig
	pool *pgxpool.Pool
	log  *slog.Logger
	m    *metrics
	lock *os.File // flock on the spool directory

	mu     sync.Mutex
	cur    *batch // events waiting for the next spool commit
	closed bool

	commitKick chan struct{} // wakes the committer
	shipKick   chan struct{} // wakes the shipper
	stopCommit chan struct{}
	commitDone chan struct{}
	drain      chan struct{} // closed by Close: ship what is spooled, then stop
	stopShip   chan struct{} // closed when Close gives up waiting
	shipCtx    context.Context
	shipCancel context.CancelFunc // cancels inserts in flight when Close gives up
	shipDone   chan struct{}
	maintStop  chan struct{}
	maintDone  chan struct{}

	// Owned by the committer goroutine.
	head    chainHead
	seg     *os.File
	segID   int64
	segSize int64 // durable length of the active segment
	segFile int64 // its size on disk: the preallocated length, or more
	// spare is a segment-sized file of zeros, fsync'd, prepared in the
	// background for the next segment (see openSegment); sparing is set while a
	// preparation runs.
	spare     chan string
	sparing   bool
	spareWG   sync.WaitGroup
	spoolErr  error // last spool failure; nil when the spool is writable
	lastProbe time.Time

	// Shared between committer and shipper.
	posMu      sync.Mutex
	activeID   int64           // segment being appended to
	activeEnd  int64           // durable length of the active segment
	sealed     map[int64]int64 // segments closed in this run -> durable length
	firstRunID int64           // segments below this come from an earlier run
	noActive   bool            // the spool is broken: no active segment
	// shipped hands the shipper the rows it would otherwise read back from the
	// spool and decode again: each entry is one durable commit (its segment and
	// byte range, and the rows as chained), oldest first. It holds at most
	// maxHandoffRows rows; commits past that (PostgreSQL down or slow) are left
	// for the shipper to read from the files, as are earlier runs' segments.
	handoff     []handoff
	handoffRows int
	handoffCap  int // maxHandoffRows; tests lower it

	spoolBytes atomic.Int64 // bytes in the spool directory
	unshipped  atomic.Int64 // rows in the spool not yet in PostgreSQL
	// lastShip is when rows last reached PostgreSQL (Unix nanoseconds; the
	// writer's start before the first): the audit lag is now minus this while
	// unshipped is not zero.
	lastShip atomic.Int64
	pgOK     atomic.Bool // the last PostgreSQL write succeeded
	spoolOK  atomic.Bool
	headSnap atomic.Pointer[chainHead] // the committer's head, for the log
}

// handoff is one spool commit the shipper may take from memory: rows, already
// chained and durable, occupying bytes [start, end) of segment seg.
type handoff struct {
	seg        int64
	start, end int64
	rows       []Row
}

// maxHandoffRows bounds the rows waiting in memory for the shipper.
const maxHandoffRows = 20_000

// batch is one group commit: every Record that arrived while the previous fsync ran.
type batch struct {
	rows []Row
	done chan struct{}
	err  error
}

func newBatch() *batch { return &batch{done: make(chan struct{})} }

// NewWriter opens (and locks) the spool, resumes the hash chain, and starts the
// committer and the shipper. Events left in the spool by an earlier run, including
// one that was killed, are shipped first. ctx bounds only the start-up.
func NewWriter(ctx context.Context, cfg WriterConfig, pool *pgxpool.Pool, logger *slog.Logger, reg prometheus.Registerer) (_ *Writer, err error) {
	defer derrors.Wrap(&err, "audit.NewWriter")
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	cfg = cfg.withDefaults()
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	if err := os.MkdirAll(cfg.SpoolDir, 0o700); err != nil {
		return nil, fmt.Errorf("creating spool directory: %w", err)
	}
	lock, err := os.OpenFile(cfg.SpoolDir+"/LOCK", os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return nil, fmt.Errorf("opening spool lock: %w", err)
	}
	if err := lockSpool(lock); err != nil {
		lock.Close()
		return nil, fmt.Errorf("spool %s is in use by another writer: %w", cfg.SpoolDir, err)
	}
	w := &Writer{
		cfg:        cfg,
		pool:       pool,
		log:        logger.With("component", "audit"),
		lock:       lock,
		cur:        newBatch(),
		commitKick: make(chan struct{}, 1),
		shipKick:   make(chan struct{}, 1),
		stopCommit: make(chan struct{}),
		commitDone: make(chan struct{}),
		drain:      make(chan struct{}),
		stopShip:   make(chan struct{}),
		shipDone:   make(chan struct{}),
		maintStop:  make(chan struct{}),
		maintDone:  make(chan struct{}),
		sealed:     map[int64]int64{},
		handoffCap: maxHandoffRows,
		spare:      make(chan string, 1),
	}
	removeSpares(cfg.SpoolDir)
	w.shipCtx, w.shipCancel = context.WithCancel(context.Background())
	w.lastShip.Store(time.Now().UnixNano())
	w.m = newMetrics(reg, w)
	defer func() {
		if err != nil {
			w.shipCancel()
			w.m.unregister()
			lock.Close()
		}
	}()

	spoolHead, lastID, err := w.scanSpool()
	if err != nil {
		return nil, err
	}
	w.head = w.resumeChain(ctx, spoolHead)
	w.firstRunID = lastID + 1
	w.segID = lastID
	// The first segment is preallocated too; later spares are written in the
	// background while the segment before them fills.
	if spare, err := writeSpare(cfg.SpoolDir, cfg.SegmentBytes); err == nil {
		w.spare <- spare
		w.sparing = true
	}
	if err := w.openSegment(); err != nil {
		// A spool that cannot be written is not fatal: events go straight to
		// PostgreSQL, and Healthy says so.
		w.spoolErr = err
		w.log.Error("audit spool unwritable; writing straight to PostgreSQL", "err", err)
	}
	w.spoolOK.Store(w.spoolErr == nil)
	w.pgOK.Store(true)

	go w.commitLoop()
	go w.shipLoop()
	if cfg.MaintenanceInterval > 0 {
		go w.maintainLoop()
	} else {
		close(w.maintDone)
	}
	return w, nil
}

// scanSpool reads every existing segment to count what is unshipped and to find the
// chain head as of the last durable row.
func (w *Writer) scanSpool() (head *chainHead, lastID int64, err error) {
	ids, err := listSegments(w.cfg.SpoolDir)
	if err != nil {
		return nil, 0, fmt.Errorf("listing spool: %w", err)
	}
	for _, id := range ids {
		fr, err := openFrameReader(segmentName(w.cfg.SpoolDir, id))
		if err != nil {
			return nil, 0, fmt.Errorf("opening spool segment: %w", err)
		}
		var rows int64
		for {
			e, err := fr.next()
			if err == errTorn {
				w.log.Warn("audit spool segment ends in a torn frame (crash during write); ignoring the tail",
					"segment", id, "offset", fr.off)
				break
			}
			if err == io.EOF {
				break
			}
			if err != nil {
				fr.Close()
				return nil, 0, fmt.Errorf("reading spool segment %d: %w", id, err)
			}
			switch {
			case e.Row != nil:
				rows++
				head = &chainHead{ChainID: e.Row.ChainID, Seq: e.Row.Seq, Hash: e.Row.Hash}
			case e.Head != nil:
				head = e.Head
			}
		}
		if st, err := fr.f.Stat(); err == nil {
			w.spoolBytes.Add(st.Size())
		}
		fr.Close()
		w.unshipped.Add(rows)
		lastID = id
	}
	if len(ids) > 0 {
		w.log.Info("audit spool found from an earlier run; replaying", "segments", len(ids), "rows", w.unshipped.Load())
	}
	return head, lastID, nil
}

// resumeChain decides where this run's rows continue the chain. The spool is the
// authority when it has a head (its rows may not be in PostgreSQL yet); otherwise the
// last row in PostgreSQL for this writer, or the retention anchor. When neither can
// be read, or they disagree in a way that would fork the chain, a new chain is
// started under a derived id: Verify then checks both chains separately instead of
// reporting a false tampering.
func (w *Writer) resumeChain(ctx context.Context, spoolHead *chainHead) chainHead {
	id := w.cfg.WriterID
	if spoolHead != nil && (spoolHead.ChainID == id || len(spoolHead.ChainID) > len(id) && spoolHead.ChainID[:len(id)+1] == id+"~") {
		if db, err := dbHead(ctx, w.pool, spoolHead.ChainID); err == nil && db.Seq > spoolHead.Seq {
			// PostgreSQL is ahead of the spool. That is consistent when rows were
			// written straight to PostgreSQL while the spool was broken or full: the
			// table then extends the spool's chain, and the table's head is the head.
			if extends, err := extendsHead(ctx, w.pool, *spoolHead); err == nil && extends {
				return db
			}
			fork := forkID(id)
			w.log.Error("audit chain in PostgreSQL diverges from the local spool (is another replica using this writer id?); starting a new chain",
				"chain", spoolHead.ChainID, "db_seq", db.Seq, "spool_seq", spoolHead.Seq, "new_chain", fork)
			return chainHead{ChainID: fork, Hash: genesisHash}
		}
		return *spoolHead
	}
	h, err := dbHead(ctx, w.pool, id)
	if err != nil {
		fork := forkID(id)
		w.log.Warn("audit chain head unknown (PostgreSQL unreachable and spool empty); starting a new chain",
			"err", err, "new_chain", fork)
		return chainHead{ChainID: fork, Hash: genesisHash}
	}
	return h
}

func forkID(id string) string {
	var b [4]byte
	rand.Read(b[:])
	return id + "~" + hex.EncodeToString(b[:])
}

// extendsHead reports whether the table's row after h links to h, which holds even
// when h's own row is still only in the spool.
func extendsHead(ctx context.Context, pool *pgxpool.Pool, h chainHead) (bool, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var prev []byte
	err := pool.QueryRow(ctx, `SELECT prev_hash FROM audit_events WHERE chain_id = $1 AND seq = $2 LIMIT 1`,
		h.ChainID, h.Seq+1).Scan(&prev)
	if err != nil {
		return false, err
	}
	return bytes.Equal(prev, h.Hash), nil
}

func dbHead(ctx context.Context, pool *pgxpool.Pool, chain string) (chainHead, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	h := chainHead{ChainID: chain}
	err := pool.QueryRow(ctx, `SELECT seq, hash FROM audit_events WHERE chain_id = $1 ORDER BY seq DESC LIMIT 1`, chain).Scan(&h.Seq, &h.Hash)
	if err == nil {
		return h, nil
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		return h, err
	}
	err = pool.QueryRow(ctx, `SELECT seq, hash FROM audit_chain_anchors WHERE chain_id = $1`, chain).Scan(&h.Seq, &h.Hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return chainHead{ChainID: chain, Hash: genesisHash}, nil
	}
	return h, err
}

// Record stores ev durably and returns nil, or returns why it could not: a
// derrors.InvalidArgument for a malformed event, a derrors.Unavailable when neither
// the spool nor PostgreSQL can take it (fail closed on that when audit is required).
// It never waits on PostgreSQL while the spool works, and takes no context: the
// caller's cancellation must not cancel the record.
func (w *Writer) Record(ev Event) error {
	ev, err := normalize(ev, w.cfg.Replica, time.Now())
	if err != nil {
		return err
	}
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return derrors.New(derrors.Unavailable, "audit log is shutting down")
	}
	b := w.cur
	b.rows = append(b.rows, Row{Event: ev})
	first := len(b.rows) == 1
	w.mu.Unlock()
	if first {
		kick(w.commitKick)
	}
	<-b.done
	if b.err == nil {
		w.m.recorded.Inc()
	} else {
		w.m.failures.WithLabelValues("record").Inc()
	}
	return b.err
}

// Healthy returns nil when an event recorded now would be stored: the spool is
// writable and has room, or PostgreSQL accepted the last write. Otherwise it returns
// a derrors.Unavailable error, for a server configured to fail closed.
func (w *Writer) Healthy() error {
	w.mu.Lock()
	closed := w.closed
	w.mu.Unlock()
	if closed {
		return derrors.New(derrors.Unavailable, "audit log is shutting down")
	}
	spoolOK := w.spoolOK.Load() && w.spoolBytes.Load() < w.cfg.MaxSpoolBytes
	if spoolOK {
		return nil
	}
	kick(w.commitKick) // let the committer probe the spool again
	if w.pgOK.Load() {
		return nil
	}
	return derrors.New(derrors.Unavailable, "audit log unavailable")
}

func kick(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// commitLoop is the only goroutine that writes the spool and advances the chain.
func (w *Writer) commitLoop() {
	defer close(w.commitDone)
	for {
		select {
		case <-w.commitKick:
		case <-w.stopCommit:
		}
		w.mu.Lock()
		b := w.cur
		w.cur = newBatch()
		closed := w.closed
		w.mu.Unlock()
		if len(b.rows) > 0 {
			b.err = w.commit(b.rows)
		} else if w.spoolErr != nil {
			w.probeSpool()
		}
		close(b.done)
		if closed {
			return
		}
	}
}

// commit chains rows, appends them to the spool and fsyncs. If the spool fails it
// writes them straight to PostgreSQL; if that fails too, it rolls the chain back
// and returns Unavailable.
func (w *Writer) commit(rows []Row) error {
	saved := w.head
	if w.spoolErr != nil {
		w.probeSpool()
	}
	full := w.spoolBytes.Load() >= w.cfg.MaxSpoolBytes
	if w.spoolErr == nil && !full {
		start := time.Now()
		err := w.appendSpool(rows)
		w.m.spoolSync.Observe(time.Since(start).Seconds())
		if err == nil {
			h := w.head
			w.headSnap.Store(&h)
			w.unshipped.Add(int64(len(rows)))
			kick(w.shipKick)
			return nil
		}
		w.m.failures.WithLabelValues("spool").Inc()
		w.log.Error("audit spool write failed; writing straight to PostgreSQL", "err", err)
		w.breakSpool(err)
		w.head = saved
	} else if full {
		w.log.Warn("audit spool full; writing straight to PostgreSQL", "bytes", w.spoolBytes.Load())
	}

	// Degraded path: no spool. Chain the rows and insert them synchronously.
	ptrs := make([]*Row, len(rows))
	for i := range rows {
		w.head = w.head.link(&rows[i])
		ptrs[i] = &rows[i]
	}
	ctx, cancel := context.WithTimeout(context.Background(), w.cfg.InsertTimeout)
	defer cancel()
	start := time.Now()
	n, err := insertRows(ctx, w.pool, ptrs, true)
	if err != nil && !isPermanent(err) && ctx.Err() == nil {
		// Once more: the first attempt may have drawn a pooled connection that a
		// PostgreSQL restart had already closed.
		n, err = insertRows(ctx, w.pool, ptrs, true)
	}
	w.m.writeLatency.Observe(time.Since(start).Seconds())
	if err != nil {
		w.pgOK.Store(false)
		w.m.failures.WithLabelValues("postgres").Inc()
		w.head = saved
		return derrors.WithCause(derrors.Unavailable, fmt.Errorf("spool: %v; postgres: %w", w.spoolErr, err), "audit log unavailable")
	}
	w.pgOK.Store(true)
	w.m.written.Add(float64(n))
	w.lastShip.Store(time.Now().UnixNano())
	h := w.head
	w.headSnap.Store(&h)
	return nil
}

// appendSpool chains rows into one buffer, writes it to the active segment (starting
// a new one when the active one is full) and fsyncs.
func (w *Writer) appendSpool(rows []Row) error {
	if w.segSize >= w.cfg.SegmentBytes {
		if err := w.openSegment(); err != nil {
			return err
		}
	}
	buf := make([]byte, 0, len(rows)*512)
	var err error
	for i := range rows {
		w.head = w.head.link(&rows[i])
		if buf, err = appendFrame(buf, &spoolEntry{Row: &rows[i]}); err != nil {
			return fmt.Errorf("encoding event: %w", err)
		}
	}
	if _, err := w.seg.WriteAt(buf, w.segSize); err != nil {
		return fmt.Errorf("writing spool: %w", err)
	}
	// fdatasync: into a preallocated, zero-filled segment the write changes no
	// metadata, so this is one data flush; past the preallocated end it flushes
	// the new size too, as fsync would.
	if err := fdatasync(w.seg); err != nil {
		return fmt.Errorf("syncing spool: %w", err)
	}
	start := w.segSize
	w.segSize += int64(len(buf))
	if w.segSize > w.segFile {
		w.spoolBytes.Add(w.segSize - w.segFile)
		w.segFile = w.segSize
	}
	w.posMu.Lock()
	w.activeEnd = w.segSize
	if w.handoffRows+len(rows) <= w.handoffCap {
		w.handoff = append(w.handoff, handoff{seg: w.segID, start: start, end: w.segSize, rows: rows})
		w.handoffRows += len(rows)
	}
	w.posMu.Unlock()
	return nil
}

// openSegment seals the active segment and starts the next one with a head entry.
// The new segment is the spare when one is ready: SegmentBytes of zeros already
// on disk, so the commits that fill it are pure data writes (fdatasync without a
// journal commit). A reader stops at the first all-zero frame header, which no
// write produces (a frame's payload is never empty).
func (w *Writer) openSegment() error {
	id := w.segID + 1
	name := segmentName(w.cfg.SpoolDir, id)
	f, size, err := w.createSegment(name)
	if err != nil {
		return fmt.Errorf("creating spool segment: %w", err)
	}
	buf, err := appendFrame(nil, &spoolEntry{Head: &w.head})
	if err == nil {
		_, err = f.WriteAt(buf, 0)
	}
	if err == nil {
		err = f.Sync()
	}
	if err == nil {
		err = syncDir(w.cfg.SpoolDir)
	}
	if err != nil {
		f.Close()
		os.Remove(name)
		return fmt.Errorf("starting spool segment: %w", err)
	}
	w.posMu.Lock()
	if w.seg != nil && !w.noActive {
		w.sealed[w.activeID] = w.activeEnd
	}
	w.activeID, w.activeEnd, w.noActive = id, int64(len(buf)), false
	w.posMu.Unlock()
	if w.seg != nil {
		w.seg.Close()
	}
	w.seg, w.segID, w.segSize, w.segFile = f, id, int64(len(buf)), max(size, int64(len(buf)))
	w.spoolBytes.Add(w.segFile)
	kick(w.shipKick)
	w.prepareSpare()
	return nil
}

// createSegment creates the segment file name: the spare renamed, when one is
// ready (size is then its preallocated length), else an empty file.
func (w *Writer) createSegment(name string) (f *os.File, size int64, err error) {
	select {
	case spare := <-w.spare:
		w.sparing = false
		if spare != "" {
			// A hard link, unlike a rename, fails rather than replace an existing name.
			if err := os.Link(spare, name); err == nil {
				os.Remove(spare)
				if f, err := os.OpenFile(name, os.O_RDWR, 0); err == nil {
					if st, err := f.Stat(); err == nil {
						return f, st.Size(), nil
					}
					f.Close()
				}
				os.Remove(name)
			} else {
				os.Remove(spare)
			}
		}
	default:
	}
	f, err = os.OpenFile(name, os.O_CREATE|os.O_EXCL|os.O_RDWR, 0o600)
	return f, 0, err
}

// prepareSpare starts writing the next segment's zeros in the background, unless
// that is already under way.
func (w *Writer) prepareSpare() {
	if w.sparing {
		return
	}
	w.sparing = true
	w.spareWG.Go(func() {
		path, err := writeSpare(w.cfg.SpoolDir, w.cfg.SegmentBytes)
		if err != nil {
			w.log.Warn("audit spool: cannot preallocate the next segment; it will grow as written", "err", err)
		}
		w.spare <- path
	})
}

const spareSuffix = ".spare"

// writeSpare writes size zero bytes to a new file in dir and fsyncs it.
func writeSpare(dir string, size int64) (string, error) {
	f, err := os.CreateTemp(dir, "segment-*"+spareSuffix)
	if err != nil {
		return "", err
	}
	zeros := make([]byte, min(size, 1<<20))
	for off := int64(0); off < size && err == nil; off += int64(len(zeros)) {
		_, err = f.Write(zeros[:min(int64(len(zeros)), size-off)])
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// removeSpares deletes spare segments left by an earlier run.
func removeSpares(dir string) {
	if matches, err := filepath.Glob(filepath.Join(dir, "segment-*"+spareSuffix)); err == nil {
		for _, m := range matches {
			os.Remove(m)
		}
	}
}

// breakSpool abandons the active segment after a failed write. The segment is cut
// back to its last durable length so a half-written batch that was refused never
// reappears on replay; the shipper reads it only up to that length anyway.
func (w *Writer) breakSpool(err error) {
	w.spoolErr = err
	w.spoolOK.Store(false)
	w.lastProbe = time.Now()
	w.posMu.Lock()
	if w.seg != nil && !w.noActive {
		w.sealed[w.activeID] = w.activeEnd
		if terr := w.seg.Truncate(w.activeEnd); terr != nil {
			w.log.Error("audit spool: cannot cut back a failed write", "segment", w.activeID, "err", terr)
		} else {
			w.spoolBytes.Add(w.activeEnd - w.segFile)
			w.segFile = w.activeEnd
		}
	}
	w.noActive = true
	w.posMu.Unlock()
	if w.seg != nil {
		w.seg.Close()
		w.seg = nil
	}
	w.segSize = 0
}

// probeSpool tries, at most once a second, to start a fresh segment after a failure.
func (w *Writer) probeSpool() {
	if time.Since(w.lastProbe) < time.Second {
		return
	}
	w.lastProbe = time.Now()
	if ids, err := listSegments(w.cfg.SpoolDir); err == nil && len(ids) > 0 && ids[len(ids)-1] > w.segID {
		w.segID = ids[len(ids)-1]
	}
	if err := w.openSegment(); err != nil {
		w.spoolErr = err
		return
	}
	w.log.Info("audit spool writable again")
	w.spoolErr = nil
	w.spoolOK.Store(true)
}

// compactSpool runs after a complete drain: it starts a segment holding only the chain
// head and removes the shipped ones, so the next start replays nothing yet still
// knows where the chain stands even if PostgreSQL is down then.
func (w *Writer) compactSpool() {
	old := w.segID
	if err := w.openSegment(); err != nil {
		w.log.Warn("audit spool: cannot compact on close", "err", err)
		return
	}
	ids, err := listSegments(w.cfg.SpoolDir)
	if err != nil {
		return
	}
	for _, id := range ids {
		if id <= old {
			os.Remove(segmentName(w.cfg.SpoolDir, id))
		}
	}
	syncDir(w.cfg.SpoolDir)
}

// Close stops accepting events, commits those already recorded, and ships the spool
// to PostgreSQL until it is empty or ctx ends. Whatever is not shipped stays in the
// spool for the next start.
func (w *Writer) Close(ctx context.Context) error {
	w.mu.Lock()
	if w.closed {
		w.mu.Unlock()
		return errors.New("audit: writer already closed")
	}
	w.closed = true
	w.mu.Unlock()
	close(w.stopCommit)
	<-w.commitDone
	close(w.maintStop)
	close(w.drain)
	kick(w.shipKick)
	var err error
	select {
	case <-w.shipDone:
	case <-ctx.Done():
		close(w.stopShip)
		w.shipCancel()
		<-w.shipDone
		err = fmt.Errorf("audit: closing with %d events left in the spool: %w", w.unshipped.Load(), ctx.Err())
	}
	<-w.maintDone
	if err == nil && w.spoolErr == nil && w.unshipped.Load() == 0 {
		w.compactSpool()
	}
	if w.seg != nil {
		w.seg.Close()
	}
	w.spareWG.Wait()
	select {
	case spare := <-w.spare:
		if spare != "" {
			os.Remove(spare)
		}
	default:
	}
	w.shipCancel()
	w.m.unregister()
	w.lock.Close()
	return err
}
