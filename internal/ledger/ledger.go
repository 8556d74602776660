// Package ledger is the private version ledger: the go.mod and zip h1: hashes of
// every private module version, recorded in PostgreSQL the first time the version
// is served, whatever its source (internal git or a publish). From then on bytes
// for that module@version that hash differently are refused, so neither a moved or
// force-pushed git tag nor a later publish can change what a released version is.
// Private paths are in GONOSUMDB, so no checksum database catches such a change
// for the go command: the ledger is the private modules' checksum database.
//
// Rows are chained like the audit trail (chain.go): each row's hash covers its
// content and the previous row's hash, and Verify names a row that was altered or
// deleted. A pin takes a row lock on the chain's head, which serialises pins from
// every replica; pins are rare (once per private version and file), so that costs
// nothing that matters, and a small in-memory cache of pins already read means
// serving a pinned version again asks PostgreSQL nothing.
package ledger

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
)

// Entry is one pinned file of a module version.
type Entry struct {
	Module, Version string
	File            string // Mod or Zip
	Hash            string // h1:..., as go.sum records it
	Source          string // where the pinned bytes came from: "git", "published", ...
	FirstServed     time.Time
	Seq             int64 // position in the chain
}

// Ledger records and checks pins. It is safe for concurrent use, and any number
// of replicas may share one database.
type Ledger struct {
	pool       *pgxpool.Pool
	log        *slog.Logger
	now        func() time.Time
	onMismatch func(*Mismatch)
	cache      *lru
	outageCopy func(module, version, file string) (Entry, bool)
}

// Option configures a Ledger.
type Option func(*Ledger)

// WithCacheSize bounds the in-memory cache of pins read (default 8192 entries;
// 0 disables it).
func WithCacheSize(n int) Option { return func(l *Ledger) { l.cache = newLRU(n) } }

// WithLogger sets the logger (default slog.Default()).
func WithLogger(log *slog.Logger) Option { return func(l *Ledger) { l.log = log } }

// WithClock sets the clock stamped on new pins (tests).
func WithClock(now func() time.Time) Option { return func(l *Ledger) { l.now = now } }

// WithOnMismatch calls f whenever Pin refuses changed bytes, for metrics.
func WithOnMismatch(f func(*Mismatch)) Option { return func(l *Ledger) { l.onMismatch = f } }

// WithOutageCopy makes Pin check bytes against pins found by copy while
// PostgreSQL is unreachable: the replica's own durable copy of the ledger
// (internal/pinstore). Nothing is pinned then: a file the copy does not hold is
// refused with 503, never served unpinned.
func WithOutageCopy(copy func(module, version, file string) (Entry, bool)) Option {
	return func(l *Ledger) { l.outageCopy = copy }
}

// DefaultCacheSize is the number of pins kept in memory unless WithCacheSize says
// otherwise: at about 200 bytes an entry, under 2 MB.
const DefaultCacheSize = 8192

// New returns a ledger over pool, whose schema migrations/0011 created.
func New(pool *pgxpool.Pool, opts ...Option) *Ledger {
	l := &Ledger{pool: pool, log: slog.Default(), now: time.Now, cache: newLRU(DefaultCacheSize)}
	for _, o := range opts {
		o(l)
	}
	return l
}

// Mismatch is the cause of the Integrity error Pin returns for changed bytes.
type Mismatch struct {
	Pinned Entry  // what the ledger holds
	Hash   string // the hash offered
	Source string // where the offered bytes came from
}

func (m *Mismatch) Error() string { return "ledger: bytes differ from the pinned hash" }

// Public is the one line for the client: both hashes and where each came from.
func (m *Mismatch) Public() string {
	return fmt.Sprintf("%s@%s: %s %s from %s differs from %s pinned from %s at %s: refusing the changed bytes",
		m.Pinned.Module, m.Pinned.Version, m.Pinned.File, m.Hash, m.Source,
		m.Pinned.Hash, m.Pinned.Source, m.Pinned.FirstServed.UTC().Format(time.RFC3339))
}

// Conflict is the error for a publish that would replace pinned bytes: 409
// naming the recorded source, which is what the publisher must hear (the
// publisher did something wrong; nothing behind the proxy did).
func (m *Mismatch) Conflict() error {
	return derrors.WithCause(derrors.Conflict, m, "%s@%s was first served from %s at %s (%s %s): a served version never changes; publish a new version",
		m.Pinned.Module, m.Pinned.Version, m.Pinned.Source, m.Pinned.FirstServed.UTC().Format(time.RFC3339), m.Pinned.File, m.Pinned.Hash)
}

// AsMismatch returns the Mismatch behind err, if any.
func AsMismatch(err error) (*Mismatch, bool) {
	var m *Mismatch
	ok := errors.As(err, &m)
	return m, ok
}

func checkArgs(module, version, file, h1, source string) error {
	switch {
	case module == "" || version == "":
		return fmt.Errorf("ledger: empty module or version")
	case file != Mod && file != Zip:
		return fmt.Errorf("ledger: unknown file kind %q", file)
	case !strings.HasPrefix(h1, "h1:"):
		return fmt.Errorf("ledger: %q is not an h1: hash", h1)
	case source == "":
		return fmt.Errorf("ledger: empty source")
	}
	return nil
}

// Pin records h1 as the hash of module@version's file the first time that file is
// seen, and returns the entry. If the version's file is pinned already it returns
// the pinned entry: with a nil error when the hashes are equal (pinning is
// idempotent), and with an error of kind derrors.Integrity whose public message
// names both hashes and the recorded source when they differ; AsMismatch(err)
// gives the details, and Mismatch.Conflict turns it into a publish's 409.
//
// Under concurrency, from any number of replicas, exactly one of several
// different hashes for one file is pinned; the others get Integrity. Errors
// reaching PostgreSQL are of kind derrors.Unavailable.
func (l *Ledger) Pin(ctx context.Context, module, version, file, h1, source string) (_ Entry, err error) {
	if err := checkArgs(module, version, file, h1, source); err != nil {
		return Entry{}, err
	}
	k := key{module, version, file}
	if e, ok := l.cache.get(k); ok {
		return l.compare(e, h1, source)
	}
	defer derrors.Wrap(&err, "ledger.Pin(%q, %q, %q)", module, version, file)
	// Most pins are of files pinned already (another replica served the version,
	// or this one forgot it): a plain read, no lock.
	e, found, err := l.get(ctx, l.pool, k)
	if err != nil {
		if l.outageCopy != nil && database.Unreachable(err) {
			return l.pinDuringOutage(k, h1, source, err)
		}
		return Entry{}, unavailable(err)
	}
	if !found {
		e, err = l.insert(ctx, k, h1, source)
		if err != nil {
			return Entry{}, unavailable(err)
		}
	}
	l.cache.put(k, e)
	return l.compare(e, h1, source)
}

// pinDuringOutage checks h1 against the outage copy's pin. A replica never pins
// while PostgreSQL is unreachable: another replica may pin other bytes for the
// same version at the same time, and only the database can pick one.
func (l *Ledger) pinDuringOutage(k key, h1, source string, dbErr error) (Entry, error) {
	e, ok := l.outageCopy(k.module, k.version, k.file)
	if !ok {
		return Entry{}, NeverServed(k.module, k.version, dbErr)
	}
	// Not kept in memory: once PostgreSQL is back, it alone answers again.
	return l.compare(e, h1, source)
}

// NeverServed is the 503 for a private version (or one of its files) that no
// replica had served before PostgreSQL became unreachable: with no pin to check
// its bytes against, it is refused rather than served unpinned.
func NeverServed(module, version string, cause error) error {
	return derrors.WithCause(derrors.Unavailable, cause,
		"cannot serve %s@%s now: it was never served before and modgate's database is unreachable to pin it; try again when it is back", module, version)
}

func (l *Ledger) compare(pinned Entry, h1, source string) (Entry, error) {
	if pinned.Hash == h1 {
		return pinned, nil
	}
	m := &Mismatch{Pinned: pinned, Hash: h1, Source: source}
	if l.onMismatch != nil {
		l.onMismatch(m)
	}
	l.log.Warn("ledger: refusing bytes that differ from the pinned hash",
		"module", pinned.Module, "version", pinned.Version, "file", pinned.File,
		"pinned", pinned.Hash, "pinned_source", pinned.Source, "offered", h1, "offered_source", source)
	return pinned, &derrors.Error{Kind: derrors.Integrity, Public: m.Public(), Cause: m}
}

// insert appends the pin under the head's row lock, or returns the row another
// replica appended first.
func (l *Ledger) insert(ctx context.Context, k key, h1, source string) (e Entry, err error) {
	err = pgx.BeginFunc(ctx, l.pool, func(tx pgx.Tx) error {
		var headSeq int64
		var headHash []byte
		// The lock: every pin of every replica queues here, so the chain has one
		// writer at a time and the read below sees any pin committed before ours.
		if err := tx.QueryRow(ctx, `SELECT seq, hash FROM private_ledger_head FOR UPDATE`).Scan(&headSeq, &headHash); err != nil {
			return fmt.Errorf("locking the ledger head: %w", err)
		}
		var found bool
		if e, found, err = l.get(ctx, tx, k); err != nil || found {
			return err
		}
		e = Entry{
			Module: k.module, Version: k.version, File: k.file, Hash: h1, Source: source,
			FirstServed: l.now().UTC().Truncate(time.Microsecond),
			Seq:         headSeq + 1,
		}
		rh := rowHash(headHash, &e)
		if _, err := tx.Exec(ctx, `
			INSERT INTO private_ledger (seq, module, version, file, hash, source, first_served, prev_hash, row_hash)
			VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)`,
			e.Seq, e.Module, e.Version, e.File, e.Hash, e.Source, e.FirstServed, headHash, rh); err != nil {
			return fmt.Errorf("inserting pin: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE private_ledger_head SET seq = $1, hash = $2`, e.Seq, rh); err != nil {
			return fmt.Errorf("advancing the ledger head: %w", err)
		}
		return nil
	})
	return e, err
}

type querier interface {
	Query(ctx context.Context, sql string, args ...any) (pgx.Rows, error)
}

const entryColumns = `module, version, file, hash, source, first_served, seq`

func scanEntries(rows pgx.Rows) ([]Entry, error) {
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (Entry, error) {
		var e Entry
		err := r.Scan(&e.Module, &e.Version, &e.File, &e.Hash, &e.Source, &e.FirstServed, &e.Seq)
		e.FirstServed = e.FirstServed.UTC()
		return e, err
	})
}

func (l *Ledger) get(ctx context.Context, q querier, k key) (Entry, bool, error) {
	rows, err := q.Query(ctx, `SELECT `+entryColumns+` FROM private_ledger WHERE module = $1 AND version = $2 AND file = $3`, k.module, k.version, k.file)
	if err != nil {
		return Entry{}, false, err
	}
	es, err := scanEntries(rows)
	if err != nil || len(es) == 0 {
		return Entry{}, false, err
	}
	return es[0], true, nil
}

// Lookup returns the pinned files of module@version ("mod" before "zip"); none
// when the version was never served.
func (l *Ledger) Lookup(ctx context.Context, module, version string) (_ []Entry, err error) {
	defer derrors.Wrap(&err, "ledger.Lookup(%q, %q)", module, version)
	rows, err := l.pool.Query(ctx, `SELECT `+entryColumns+` FROM private_ledger WHERE module = $1 AND version = $2 ORDER BY file`, module, version)
	if err != nil {
		return nil, unavailable(err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, unavailable(err)
	}
	for _, e := range es {
		l.cache.put(key{e.Module, e.Version, e.File}, e)
	}
	return es, nil
}

// Cached returns a pin from memory only, without asking PostgreSQL: what a
// replica can still check bytes against while the database is unreachable.
func (l *Ledger) Cached(module, version, file string) (Entry, bool) {
	return l.cache.get(key{module, version, file})
}

// Since returns at most limit pins with seq greater than seq, in chain order:
// what a replica's outage copy (internal/pinstore) has not seen yet.
func (l *Ledger) Since(ctx context.Context, seq int64, limit int) (_ []Entry, err error) {
	defer derrors.Wrap(&err, "ledger.Since(%d)", seq)
	rows, err := l.pool.Query(ctx, `SELECT `+entryColumns+` FROM private_ledger WHERE seq > $1 ORDER BY seq LIMIT $2`, seq, limit)
	if err != nil {
		return nil, unavailable(err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, unavailable(err)
	}
	return es, nil
}

// All returns every pin in chain order.
func (l *Ledger) All(ctx context.Context) (_ []Entry, err error) {
	defer derrors.Wrap(&err, "ledger.All")
	rows, err := l.pool.Query(ctx, `SELECT `+entryColumns+` FROM private_ledger ORDER BY seq`)
	if err != nil {
		return nil, unavailable(err)
	}
	es, err := scanEntries(rows)
	if err != nil {
		return nil, unavailable(err)
	}
	return es, nil
}

func unavailable(err error) error {
	if err == nil || errors.Is(err, context.Canceled) {
		return err
	}
	return derrors.WithCause(derrors.Unavailable, err, "the private version ledger is unavailable; try again shortly")
}
