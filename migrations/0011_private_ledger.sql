-- The private version ledger (internal/ledger): the go.mod and zip h1: hashes of
-- every private module version the first time modgate served it, from git or
-- published. Later bytes for the same module@version that hash differently are
-- refused, so a moved git tag, a force-push or a publish cannot change what a
-- released version is.
--
-- Rows are never updated or deleted. They form one hash chain, like the audit
-- trail: row_hash is SHA-256 over prev_hash and a canonical encoding of the row
-- (internal/ledger/chain.go), prev_hash is the row_hash of the row with seq - 1.
-- private_ledger_head holds the last link; a pin locks it (SELECT ... FOR UPDATE),
-- which serialises pins from every replica, and `modgate private verify` compares
-- it with the last row so that rows deleted from the end are seen too.

CREATE TABLE private_ledger (
    seq          bigint      PRIMARY KEY CHECK (seq > 0),
    module       text        NOT NULL CHECK (module <> ''),
    version      text        NOT NULL CHECK (version <> ''),
    file         text        NOT NULL CHECK (file IN ('mod', 'zip')),
    hash         text        NOT NULL CHECK (hash LIKE 'h1:%'),
    source       text        NOT NULL CHECK (source <> ''),
    first_served timestamptz NOT NULL,
    prev_hash    bytea       NOT NULL,
    row_hash     bytea       NOT NULL,
    UNIQUE (module, version, file)
);

CREATE TABLE private_ledger_head (
    id   boolean PRIMARY KEY DEFAULT true CHECK (id),
    seq  bigint  NOT NULL,
    hash bytea   NOT NULL
);
INSERT INTO private_ledger_head (seq, hash) VALUES (0, '\x0000000000000000000000000000000000000000000000000000000000000000');
