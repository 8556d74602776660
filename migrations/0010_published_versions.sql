-- Module versions published into modgate (`modgate publish`, PUT
-- /api/v1/modules/{module}/@v/{version}; internal/publish).
--
-- A row is the single arbiter of a version's content: the zip and go.mod are
-- written to storage under content-addressed keys (zip_key, mod_key) and made
-- durable first, then the row is INSERTed with ON CONFLICT DO NOTHING. Whoever
-- inserts the row has published the version; everyone else compares hashes
-- (identical content is an idempotent success, anything else a conflict). A
-- version's row is never updated except to tombstone it: deleted_at set means the
-- version answers 410 Gone with delete_reason and can never be published again.
-- An object whose row was never written (a crash between Put and INSERT, or the
-- loser of a race) is unreferenced and never served.

CREATE TABLE published_versions (
    module        text        NOT NULL CHECK (module <> ''),
    version       text        NOT NULL CHECK (version <> ''),
    zip_hash      text        NOT NULL CHECK (zip_hash LIKE 'h1:%'),  -- dirhash.HashZip, as go.sum records it
    mod_hash      text        NOT NULL CHECK (mod_hash LIKE 'h1:%'),  -- the go.mod's h1 (go.sum's /go.mod line)
    zip_size      bigint      NOT NULL CHECK (zip_size > 0),
    zip_key       text        NOT NULL,
    mod_key       text        NOT NULL,
    publisher     text        NOT NULL CHECK (publisher <> ''),
    published_at  timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz,
    deleted_by    text        NOT NULL DEFAULT '',
    delete_reason text        NOT NULL DEFAULT '',
    PRIMARY KEY (module, version),
    CHECK ((deleted_at IS NULL) = (deleted_by = ''))
);
