package app

import (
	"context"
	"os"

	"github.com/modgate/modgate/internal/ledger"
	"github.com/modgate/modgate/internal/pinstore"
	"github.com/modgate/modgate/internal/publish"
)

// openPinCopy loads the replica's outage copy of the ledger's pins and the
// published versions and keeps it refreshed until Close. A copy that cannot be
// read is rebuilt from the database: it is a cache of PostgreSQL's rows, and
// the replica only needs it once PostgreSQL is gone.
func (a *App) openPinCopy(reg *publish.Registry) *pinstore.Copy {
	path := a.cfg.PinCopyFile()
	pins, err := pinstore.Open(path)
	if err != nil {
		a.log.Warn("pinstore: ignoring the outage copy of the ledger; rebuilding it from the database", "error", err)
	}
	if n, p := pins.Len(); n > 0 || p > 0 {
		a.log.Info("pinstore: loaded the outage copy of the ledger", "path", path, "pins", n, "published", p)
	}
	src := pinSource{ledger: ledger.New(a.pool, ledger.WithLogger(a.log), ledger.WithCacheSize(0)), registry: reg}
	ctx, stop := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { pins.Run(ctx, src, a.cfg.Private.PinCopyRefresh.D(), a.log); close(done) }()
	a.closers = append(a.closers, func() { stop(); <-done })
	return pins
}

// pinSource is what a refresh of the outage copy reads.
type pinSource struct {
	ledger   *ledger.Ledger
	registry *publish.Registry
}

func (s pinSource) PinsSince(ctx context.Context, seq int64, limit int) ([]ledger.Entry, error) {
	return s.ledger.Since(ctx, seq, limit)
}

func (s pinSource) PublishedAll(ctx context.Context) ([]publish.Version, error) {
	return s.registry.All(ctx)
}

// kickingRegistry is the published registry telling the outage copy of each
// publish, delete and tombstone, so the copy has it within a second.
type kickingRegistry struct {
	*publish.Registry
	pins *pinstore.Copy
}

func (r kickingRegistry) Publish(ctx context.Context, c publish.Checked, zipFile *os.File, publisher string) (publish.Version, publish.Outcome, error) {
	defer r.pins.Kick()
	return r.Registry.Publish(ctx, c, zipFile, publisher)
}

func (r kickingRegistry) Delete(ctx context.Context, modulePath, version, by, reason string) (publish.Version, error) {
	defer r.pins.Kick()
	return r.Registry.Delete(ctx, modulePath, version, by, reason)
}

func (r kickingRegistry) Tombstone(ctx context.Context, modulePath, version, modHash, zipHash string, size int64, source, by, reason string) (publish.Version, error) {
	defer r.pins.Kick()
	return r.Registry.Tombstone(ctx, modulePath, version, modHash, zipHash, size, source, by, reason)
}
