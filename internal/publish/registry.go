package publish

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"golang.org/x/mod/module"

	"github.com/modgate/modgate/internal/database"
	"github.com/modgate/modgate/internal/derrors"
	"github.com/modgate/modgate/internal/storage"
)

// Version is one published version's record.
type Version struct {
	Module, Version  string
	ZipHash, ModHash string
	Size             int64
	ZipKey, ModKey   string // storage keys of the zip and go.mod
	Publisher        string
	PublishedAt      time.Time
	// Deleted versions keep their row as a tombstone.
	DeletedAt    time.Time // zero while the version is live
	DeletedBy    string
	DeleteReason string
}

// Deleted reports whether the version has been deleted.
func (v Version) Deleted() bool { return !v.DeletedAt.IsZero() }

// GoneError is the 410 a deleted version answers with, for every caller.
func (v Version) GoneError() error {
	return derrors.New(derrors.Gone, "%s@%s was deleted by %s at %s: %s",
		v.Module, v.Version, v.DeletedBy, v.DeletedAt.UTC().Format(time.RFC3339), v.DeleteReason)
}

// Outcome says what Publish did.
type Outcome int

const (
	// Created: this call published the version.
	Created Outcome = iota + 1
	// Identical: the version was already published with the same content (the
	// same h1 hash go.sum records); nothing changed.
	Identical
)

// Registry records published versions in PostgreSQL and their bytes in a store.
// PostgreSQL is the arbiter: a version exists once its row commits, and the
// objects the row names are durable before the row is written. It is safe for
// concurrent use by any number of goroutines and replicas.
type Registry struct {
	pool  *pgxpool.Pool
	store storage.Store
	log   *slog.Logger
}

// NewRegistry returns a registry over pool (migrated: table published_versions)
// and store.
func NewRegistry(pool *pgxpool.Pool, store storage.Store, log *slog.Logger) *Registry {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return &Registry{pool: pool, store: store, log: log}
}

// Store returns the object store the registry writes to.
func (r *Registry) Store() storage.Store { return r.store }

// keys returns the content-addressed storage keys for an upload: identical bytes
// share keys (so concurrent identical publishes write the same object), different
// bytes never do (so the loser of a race cannot overwrite the winner's object).
func keys(c Checked) (zipKey, modKey string, err error) {
	escMod, err := module.EscapePath(c.Module)
	if err != nil {
		return "", "", err
	}
	escVer, err := module.EscapeVersion(c.Version)
	if err != nil {
		return "", "", err
	}
	base := "published/" + escMod + "/@v/" + escVer + "/" + c.SHA256
	return base + ".zip", base + ".mod", nil
}

const versionColumns = `module, version, zip_hash, mod_hash, zip_size, zip_key, mod_key, publisher,
	published_at, deleted_at, deleted_by, delete_reason`

func scanVersion(row pgx.Row) (Version, error) {
	var v Version
	var deleted *time.Time
	err := row.Scan(&v.Module, &v.Version, &v.ZipHash, &v.ModHash, &v.Size, &v.ZipKey, &v.ModKey,
		&v.Publisher, &v.PublishedAt, &deleted, &v.DeletedBy, &v.DeleteReason)
	if deleted != nil {
		v.DeletedAt = *deleted
	}
	return v, err
}

// Get returns the record of modulePath@version, deleted or not, or a
// derrors.NotFound error.
func (r *Registry) Get(ctx context.Context, modulePath, version string) (_ Version, err error) {
	defer derrors.Wrap(&err, "publish: Get(%q, %q)", modulePath, version)
	v, err := scanVersion(r.pool.QueryRow(ctx,
		`SELECT `+versionColumns+` FROM published_versions WHERE module = $1 AND version = $2`, modulePath, version))
	if errors.Is(err, pgx.ErrNoRows) {
		return Version{}, derrors.New(derrors.NotFound, "%s@%s is not published in modgate", modulePath, version)
	}
	if err != nil {
		return Version{}, unavailable(err)
	}
	return v, nil
}

// unavailable marks a database or storage failure as a 503 whose public line
// says nothing of the internals.
func unavailable(err error) error {
	var de *derrors.Error
	if errors.As(err, &de) {
		return err
	}
	if database.Unreachable(err) {
		return derrors.WithCause(derrors.Unavailable, err, "%s", database.Why(err))
	}
	return derrors.WithCause(derrors.Unavailable, err, "modgate cannot reach its database or storage right now; try again")
}

// dbDown names what could not be done when err says the database could not be
// asked; other errors pass unchanged.
func dbDown(err error, doing string, args ...any) error {
	database.MarkUnavailable(&err, doing, args...)
	return err
}

// List returns every record of modulePath, deleted ones included, oldest first.
func (r *Registry) List(ctx context.Context, modulePath string) (_ []Version, err error) {
	defer derrors.Wrap(&err, "publish: List(%q)", modulePath)
	rows, err := r.pool.Query(ctx,
		`SELECT `+versionColumns+` FROM published_versions WHERE module = $1 ORDER BY published_at, version`, modulePath)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// All returns every record of every module, deleted ones included, ordered by
// module and version: what a replica's outage copy (internal/pinstore) keeps
// to route private versions while PostgreSQL is unreachable.
func (r *Registry) All(ctx context.Context) (_ []Version, err error) {
	defer derrors.Wrap(&err, "publish: All")
	rows, err := r.pool.Query(ctx, `SELECT `+versionColumns+` FROM published_versions ORDER BY module, version`)
	if err != nil {
		return nil, unavailable(err)
	}
	defer rows.Close()
	var out []Version
	for rows.Next() {
		v, err := scanVersion(rows)
		if err != nil {
			return nil, unavailable(err)
		}
		out = append(out, v)
	}
	if err := rows.Err(); err != nil {
		return nil, unavailable(err)
	}
	return out, nil
}

// Publish records c, whose zip is the local file zipFile, as published by
// publisher. It returns the version's record and Created or Identical, or an
// error: derrors.Conflict when the version exists with different content,
// derrors.Gone when it was deleted (versions are never reusable).
//
// The zip and go.mod are written to storage (durably: Store.Put syncs) before the
// row is inserted, so a committed row always names objects that exist. The insert
// is ON CONFLICT DO NOTHING: of any number of concurrent publishers on any
// replicas exactly one inserts; the others read the winner's row and compare.
// zipFile may be moved by the store (a disk store renames its scratch files).
func (r *Registry) Publish(ctx context.Context, c Checked, zipFile *os.File, publisher string) (_ Version, _ Outcome, err error) {
	defer derrors.Wrap(&err, "publish: Publish(%q, %q)", c.Module, c.Version)
	if publisher == "" {
		return Version{}, 0, errors.New("empty publisher")
	}
	// Fast path: an existing version is decided without writing any object.
	if v, err := r.Get(ctx, c.Module, c.Version); err == nil {
		out, err := compare(v, c)
		return v, out, err
	} else if !errors.Is(err, derrors.NotFound) {
		// Nothing is written before the database has said the version is new.
		return Version{}, 0, dbDown(err, "cannot publish %s@%s now (nothing was stored)", c.Module, c.Version)
	}

	zipKey, modKey, err := keys(c)
	if err != nil {
		return Version{}, 0, err
	}
	if err := r.putBytes(ctx, modKey, c.GoMod); err != nil {
		return Version{}, 0, unavailable(err)
	}
	if err := r.store.Put(ctx, zipKey, zipFile); err != nil {
		return Version{}, 0, unavailable(err)
	}
	v, err := scanVersion(r.pool.QueryRow(ctx, `
		INSERT INTO published_versions (module, version, zip_hash, mod_hash, zip_size, zip_key, mod_key, publisher)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
		ON CONFLICT (module, version) DO NOTHING
		RETURNING `+versionColumns,
		c.Module, c.Version, c.ZipHash, c.ModHash, c.Size, zipKey, modKey, publisher))
	if err == nil {
		return v, Created, nil
	}
	if database.TimedOut(err) {
		// Cancelled by statement_timeout: the insert had no effect. The objects
		// stay (harmless if unreferenced; they may be a concurrent identical
		// publish's), the version is not published.
		return Version{}, 0, dbDown(unavailable(err), "cannot publish %s@%s now (it was not recorded)", c.Module, c.Version)
	}
	if !errors.Is(err, pgx.ErrNoRows) {
		// The row may or may not have committed: leave the objects, which are
		// harmless if unreferenced, rather than risk deleting a live version's.
		return Version{}, 0, dbDown(unavailable(err), "cannot publish %s@%s now (publish it again to find out whether it was recorded)", c.Module, c.Version)
	}
	// Lost the race: someone else's row stands.
	v, err = r.Get(ctx, c.Module, c.Version)
	if err != nil {
		return Version{}, 0, err
	}
	if v.Deleted() || v.ZipKey != zipKey {
		r.removeObjects(ctx, zipKey, modKey)
	}
	out, err := compare(v, c)
	return v, out, err
}

// compare decides a publish of c against the existing record v.
func compare(v Version, c Checked) (Outcome, error) {
	switch {
	case v.Deleted():
		return 0, derrors.New(derrors.Gone, "%s@%s was deleted by %s at %s and can never be published again: %s",
			v.Module, v.Version, v.DeletedBy, v.DeletedAt.UTC().Format(time.RFC3339), v.DeleteReason)
	case v.ZipHash == c.ZipHash && v.ModHash == c.ModHash:
		return Identical, nil
	}
	return 0, derrors.New(derrors.Conflict, "%s@%s is already published with different content (%s, by %s at %s); versions are immutable: publish a new version",
		v.Module, v.Version, v.ZipHash, v.Publisher, v.PublishedAt.UTC().Format(time.RFC3339))
}

// Delete tombstones modulePath@version: from now on it answers 410 Gone with
// reason and can never be published again. Its objects are removed from storage
// after the tombstone commits. It returns the tombstoned record; deleting a
// version not published in modgate is derrors.NotFound, deleting it twice
// derrors.Gone.
func (r *Registry) Delete(ctx context.Context, modulePath, version, by, reason string) (_ Version, err error) {
	defer derrors.Wrap(&err, "publish: Delete(%q, %q)", modulePath, version)
	if by == "" || reason == "" {
		return Version{}, errors.New("delete needs a subject and a reason")
	}
	v, err := scanVersion(r.pool.QueryRow(ctx, `
		UPDATE published_versions SET deleted_at = now(), deleted_by = $3, delete_reason = $4
		WHERE module = $1 AND version = $2 AND deleted_at IS NULL
		RETURNING `+versionColumns, modulePath, version, by, reason))
	if errors.Is(err, pgx.ErrNoRows) {
		old, gerr := r.Get(ctx, modulePath, version)
		if gerr != nil {
			return Version{}, dbDown(gerr, "cannot delete %s@%s now", modulePath, version)
		}
		return old, old.GoneError()
	}
	if err != nil {
		return Version{}, dbDown(unavailable(err), "cannot delete %s@%s now", modulePath, version)
	}
	r.removeObjects(ctx, v.ZipKey, v.ModKey)
	return v, nil
}

// Tombstone deletes modulePath@version that was never published into modgate
// but is served from another source (a git tag): it records the version as
// deleted, with the hashes it was served with, so that it answers 410 Gone
// from then on whatever the other source still has, and can never be
// published. Tombstoning a version that has a row is Delete's job: it answers
// derrors.Conflict for a live one and derrors.Gone for a deleted one.
func (r *Registry) Tombstone(ctx context.Context, modulePath, version, modHash, zipHash string, size int64, source, by, reason string) (_ Version, err error) {
	defer derrors.Wrap(&err, "publish: Tombstone(%q, %q)", modulePath, version)
	if by == "" || reason == "" || source == "" {
		return Version{}, errors.New("tombstone needs a source, a subject and a reason")
	}
	v, err := scanVersion(r.pool.QueryRow(ctx, `
		INSERT INTO published_versions (module, version, zip_hash, mod_hash, zip_size, zip_key, mod_key, publisher, deleted_at, deleted_by, delete_reason)
		VALUES ($1, $2, $3, $4, $5, '', '', $6, now(), $7, $8)
		ON CONFLICT (module, version) DO NOTHING
		RETURNING `+versionColumns, modulePath, version, zipHash, modHash, size, source, by, reason))
	if errors.Is(err, pgx.ErrNoRows) {
		old, gerr := r.Get(ctx, modulePath, version)
		if gerr != nil {
			return Version{}, gerr
		}
		if old.Deleted() {
			return old, old.GoneError()
		}
		return old, derrors.New(derrors.Conflict, "%s@%s is published in modgate; delete it as a published version", modulePath, version)
	}
	if err != nil {
		return Version{}, unavailable(err)
	}
	return v, nil
}

// removeObjects deletes objects no row references any more. A failure leaves an
// unreferenced object, which is never served; it is logged for the operator.
func (r *Registry) removeObjects(ctx context.Context, keys ...string) {
	for _, k := range keys {
		if err := r.store.Delete(context.WithoutCancel(ctx), k); err != nil {
			r.log.Warn("publish: removing unreferenced object", "key", k, "error", err)
		}
	}
}

// putBytes writes data under key through a scratch file.
func (r *Registry) putBytes(ctx context.Context, key string, data []byte) error {
	f, err := os.CreateTemp(r.store.ScratchDir(), "publish-*")
	if err != nil {
		return fmt.Errorf("scratch file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	if _, err := f.Write(data); err != nil {
		return fmt.Errorf("scratch file: %w", err)
	}
	return r.store.Put(ctx, key, f)
}
