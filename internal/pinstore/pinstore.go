// Package pinstore is a replica's own durable copy of what it needs to serve
// private versions while PostgreSQL is unreachable: every pin of the private
// version ledger (internal/ledger) and every record of the published registry
// (internal/publish), tombstones included. With it a replica that never served
// a version can still check a git fetch of it against its pin, and still
// answers 410 for a deleted version; without it, it could only refuse.
//
// The copy is refreshed while the database is up (Run) and written to one
// JSON file, atomically, so a replica restarted during an outage has it. It is
// never the authority: a replica pins only in PostgreSQL, and reads the copy
// only when PostgreSQL cannot be asked (docs/operations.md, SECURITY.md).
//
// Size: about 220 bytes a pin (two per version served) and 750 a published
// record on disk, somewhat more in memory; 100,000 pins and 1,000 published
// versions make a 22 MB file, written (or read at start) in about 2 s on a busy
// 2-core machine. It is rewritten only when a refresh brought something new,
// and kicked refreshes are spaced so that writing it takes at most a fifth of
// the time.
package pinstore

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/publish"
)

// format is the file's format version; a file of another format is ignored
// (and rebuilt from the database).
const format = 1

// file is the on-disk form: one JSON document.
type file struct {
	Format int `json:"format"`
	// LedgerSeq is the highest ledger seq read from PostgreSQL: the next
	// refresh asks for pins after it.
	LedgerSeq int64             `json:"ledger_seq"`
	Refreshed time.Time         `json:"refreshed"`
	Pins      []ledger.Entry    `json:"pins"`
	Published []publish.Version `json:"published"`
}

type pinKey struct{ module, version, file string }
type versionKey struct{ module, version string }

// Copy is the replica's copy. It is safe for concurrent use.
type Copy struct {
	path   string
	kick   chan struct{}
	saveMu sync.Mutex // one writer of the file at a time

	mu        sync.RWMutex
	ledgerSeq int64
	refreshed time.Time
	pins      map[pinKey]ledger.Entry
	versions  map[versionKey]bool // module@version with at least one pin
	published map[versionKey]publish.Version
	byModule  map[string][]publish.Version // in the registry's List order
	gen       int64                        // bumped by every change
	savedGen  int64                        // gen last written to the file
}

// Open loads the copy at path; a missing file is an empty copy. A file that
// cannot be read or parsed is an error, with an empty copy that a refresh
// rebuilds: the caller logs it and goes on.
func Open(path string) (*Copy, error) {
	c := &Copy{path: path, kick: make(chan struct{}, 1)}
	c.reset()
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("pinstore: %w", err)
	}
	var f file
	if err := json.Unmarshal(data, &f); err != nil {
		return c, fmt.Errorf("pinstore: %s is not a pin copy: %w", path, err)
	}
	if f.Format != format {
		return c, fmt.Errorf("pinstore: %s has format %d, want %d", path, f.Format, format)
	}
	c.ledgerSeq, c.refreshed = f.LedgerSeq, f.Refreshed
	c.addPins(f.Pins)
	c.setPublished(f.Published)
	c.savedGen = c.gen
	return c, nil
}

func (c *Copy) reset() {
	c.pins = make(map[pinKey]ledger.Entry)
	c.versions = make(map[versionKey]bool)
	c.published = make(map[versionKey]publish.Version)
	c.byModule = make(map[string][]publish.Version)
}

// Pin returns the pin of module@version's file ("mod" or "zip").
func (c *Copy) Pin(module, version, file string) (ledger.Entry, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	e, ok := c.pins[pinKey{module, version, file}]
	return e, ok
}

// Pinned reports whether module@version's file is pinned; file "" asks
// whether any of its files is.
func (c *Copy) Pinned(module, version, file string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if file == "" {
		return c.versions[versionKey{module, version}]
	}
	_, ok := c.pins[pinKey{module, version, file}]
	return ok
}

// Published returns module@version's registry record, deleted or not.
func (c *Copy) Published(module, version string) (publish.Version, bool) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	v, ok := c.published[versionKey{module, version}]
	return v, ok
}

// PublishedList returns every registry record of module, deleted ones
// included, oldest first, as publish.Registry.List does.
func (c *Copy) PublishedList(module string) []publish.Version {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return slices.Clone(c.byModule[module])
}

// Refreshed returns when the copy last matched PostgreSQL (zero: never).
func (c *Copy) Refreshed() time.Time {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.refreshed
}

// Len returns the number of pins and of registry records held.
func (c *Copy) Len() (pins, published int) {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return len(c.pins), len(c.published)
}

// AddPins records pins this replica made or read, ahead of the next refresh.
func (c *Copy) AddPins(es ...ledger.Entry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.addPins(es)
}

func (c *Copy) addPins(es []ledger.Entry) {
	for _, e := range es {
		k := pinKey{e.Module, e.Version, e.File}
		if old, ok := c.pins[k]; ok && old == e {
			continue
		}
		c.pins[k] = e
		c.versions[versionKey{e.Module, e.Version}] = true
		c.gen++
	}
}

func (c *Copy) setPublished(all []publish.Version) {
	published := make(map[versionKey]publish.Version, len(all))
	byModule := make(map[string][]publish.Version)
	for _, v := range all {
		v.PublishedAt, v.DeletedAt = v.PublishedAt.UTC(), v.DeletedAt.UTC()
		published[versionKey{v.Module, v.Version}] = v
		byModule[v.Module] = append(byModule[v.Module], v)
	}
	for _, vs := range byModule {
		// publish.Registry.List's order.
		slices.SortFunc(vs, func(a, b publish.Version) int {
			if c := a.PublishedAt.Compare(b.PublishedAt); c != 0 {
				return c
			}
			return strings.Compare(a.Version, b.Version)
		})
	}
	if len(published) == len(c.published) {
		same := true
		for k, v := range published {
			if old, ok := c.published[k]; !ok || old != v {
				same = false
				break
			}
		}
		if same {
			return
		}
	}
	c.published, c.byModule = published, byModule
	c.gen++
}

// Source is where a refresh reads from: the ledger and the registry in
// PostgreSQL.
type Source interface {
	// PinsSince returns at most limit pins with seq > seq, in seq order.
	PinsSince(ctx context.Context, seq int64, limit int) ([]ledger.Entry, error)
	// PublishedAll returns every registry record, tombstones included.
	PublishedAll(ctx context.Context) ([]publish.Version, error)
}

// refreshPage bounds one query for new pins.
const refreshPage = 5000

// Refresh reads the pins added since the last refresh and every registry
// record (the registry is small, and a deletion changes a row rather than
// adding one), then writes the file if anything changed.
func (c *Copy) Refresh(ctx context.Context, src Source) error {
	c.mu.RLock()
	seq := c.ledgerSeq
	c.mu.RUnlock()
	var pins []ledger.Entry
	for {
		page, err := src.PinsSince(ctx, seq, refreshPage)
		if err != nil {
			return fmt.Errorf("pinstore: refreshing pins: %w", err)
		}
		pins = append(pins, page...)
		if len(page) > 0 {
			seq = page[len(page)-1].Seq
		}
		if len(page) < refreshPage {
			break
		}
	}
	published, err := src.PublishedAll(ctx)
	if err != nil {
		return fmt.Errorf("pinstore: refreshing published versions: %w", err)
	}
	c.mu.Lock()
	c.addPins(pins)
	if seq > c.ledgerSeq {
		c.ledgerSeq = seq
	}
	c.setPublished(published)
	c.refreshed = time.Now().UTC()
	c.mu.Unlock()
	return c.Save()
}

// Save writes the copy if it changed since it was last written: a temporary
// file in the same directory, fsync'd, renamed over the old one (and the
// directory fsync'd), so a crash leaves the old copy or the new one, never a
// torn one. The file is 0600: it names every private module served. Readers
// are held only while the document is assembled, not while it is written.
func (c *Copy) Save() error {
	c.saveMu.Lock()
	defer c.saveMu.Unlock()
	c.mu.RLock()
	if c.gen == c.savedGen {
		c.mu.RUnlock()
		return nil
	}
	gen := c.gen
	f := file{Format: format, LedgerSeq: c.ledgerSeq, Refreshed: c.refreshed,
		Pins: make([]ledger.Entry, 0, len(c.pins)), Published: make([]publish.Version, 0, len(c.published))}
	for _, e := range c.pins {
		f.Pins = append(f.Pins, e)
	}
	for _, m := range sortedKeys(c.byModule) {
		f.Published = append(f.Published, c.byModule[m]...)
	}
	c.mu.RUnlock()
	slices.SortFunc(f.Pins, func(a, b ledger.Entry) int {
		if c := cmp.Compare(a.Seq, b.Seq); c != 0 {
			return c
		}
		return strings.Compare(a.Module+"@"+a.Version+"/"+a.File, b.Module+"@"+b.Version+"/"+b.File)
	})
	data, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("pinstore: %w", err)
	}
	if err := writeFileAtomic(c.path, data); err != nil {
		return fmt.Errorf("pinstore: writing %s: %w", c.path, err)
	}
	c.mu.Lock()
	c.savedGen = gen // changes made meanwhile are written next time
	c.mu.Unlock()
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	return keys
}

func writeFileAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a successful rename, a no-op
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return err
	}
	// The rename is durable once the directory is.
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// Kick asks Run to refresh soon: this replica pinned, published or deleted
// something. Kicks coalesce.
func (c *Copy) Kick() {
	select {
	case c.kick <- struct{}{}:
	default:
	}
}

// minGap spaces kicked refreshes, so a burst of first downloads costs a
// refresh a second, not one per pin; a copy that takes long to write is
// refreshed on kicks at most a fifth of the time.
const minGap = time.Second

// Run refreshes the copy every interval and soon after a Kick, until ctx ends.
// A refresh that fails (the database is down) keeps the copy as it was and is
// retried at the next tick; it is logged once per outage, not per tick.
func (c *Copy) Run(ctx context.Context, src Source, interval time.Duration, log *slog.Logger) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	tick := time.NewTicker(interval)
	defer tick.Stop()
	failing := false
	var took time.Duration
	refresh := func() {
		rctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		start := time.Now()
		err := c.Refresh(rctx, src)
		took = time.Since(start)
		cancel()
		switch {
		case err != nil && ctx.Err() == nil && !failing:
			failing = true
			pins, published := c.Len()
			log.Warn("pinstore: cannot refresh the outage copy of the ledger; keeping the last one", "pins", pins, "published", published, "error", err)
		case err == nil && failing:
			failing = false
			log.Info("pinstore: outage copy of the ledger refreshed again")
		}
	}
	refresh()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-c.kick:
			select {
			case <-ctx.Done():
				return
			case <-time.After(max(minGap, 4*took)):
			}
		}
		refresh()
	}
}
