-- When modgate first saw each public module version from upstream
-- (internal/firstseen). The cool-down measures a version's age from the later of
-- this time and the upstream's .info Time: an author can backdate the .info Time
-- of a VCS-backed version, not the moment modgate first saw it.
--
-- A row is inserted once (ON CONFLICT DO NOTHING, the database's clock) and never
-- updated, so every replica sharing the database agrees on it.

CREATE TABLE version_first_seen (
    module     text        NOT NULL CHECK (module <> ''),
    version    text        NOT NULL CHECK (version <> ''),
    first_seen timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (module, version)
);
