-- The audit trail: one row per pull, publish, delete and denial.
--
-- Rows are written by internal/audit's writer from its on-disk spool, so every row may
-- arrive more than once (replay after a crash or an outage): event_id is the
-- idempotency key. PostgreSQL requires a unique index on a partitioned table to include
-- the partition key, so the key is (event_id, time); an event's time is fixed when it is
-- recorded and travels with it in the spool, so a replayed copy collides exactly.
--
-- Tamper evidence: each writer (chain_id) numbers its rows (seq) and links them:
-- hash = SHA-256(prev_hash || canonical encoding of the row). `modgate audit verify`
-- recomputes the chains. Rows are never updated.

CREATE TABLE audit_events (
    id               bigserial        NOT NULL,
    event_id         uuid             NOT NULL,
    time             timestamptz      NOT NULL,
    request_id       text             NOT NULL DEFAULT '',
    decision_id      text             NOT NULL DEFAULT '',
    subject          text             NOT NULL DEFAULT '',
    teams            text[]           NOT NULL DEFAULT '{}',
    auth_method      text             NOT NULL DEFAULT '',
    client_addr      text             NOT NULL DEFAULT '',
    cert_fingerprint text             NOT NULL DEFAULT '',
    action           text             NOT NULL,  -- list, info, mod, zip, latest, sumdb, publish, delete, ...
    module           text             NOT NULL DEFAULT '',
    version          text             NOT NULL DEFAULT '',
    outcome          text             NOT NULL,  -- served, denied, not_found, gone, error, ...
    status           integer          NOT NULL DEFAULT 0,
    reason           text             NOT NULL DEFAULT '',
    source           text             NOT NULL DEFAULT '',  -- cache, an upstream URL, git, published
    bytes            bigint           NOT NULL DEFAULT 0,
    duration_ms      double precision NOT NULL DEFAULT 0,
    user_agent       text             NOT NULL DEFAULT '',
    replica          text             NOT NULL DEFAULT '',
    chain_id         text             NOT NULL,
    seq              bigint           NOT NULL,
    prev_hash        bytea            NOT NULL,
    hash             bytea            NOT NULL,
    PRIMARY KEY (time, id),  -- also serves keyset paging (newest first)
    UNIQUE (event_id, time)
) PARTITION BY RANGE (time);

-- Rows outside every monthly partition (clock skew, a spool replayed long after its
-- partition was dropped) land here; audit_maintain_partitions moves them out.
CREATE TABLE audit_events_default PARTITION OF audit_events DEFAULT;

CREATE INDEX audit_events_module_idx  ON audit_events (module, version, time);
CREATE INDEX audit_events_subject_idx ON audit_events (subject, time);
CREATE INDEX audit_events_teams_idx   ON audit_events USING gin (teams);
CREATE INDEX audit_events_outcome_idx ON audit_events (outcome, time);
CREATE INDEX audit_events_chain_idx   ON audit_events (chain_id, seq);

-- When retention drops a partition, the last link of each chain in it is kept here so
-- that verification can start the remaining rows from a known hash instead of
-- reporting the dropped months as deleted rows.
CREATE TABLE audit_chain_anchors (
    chain_id   text        PRIMARY KEY,
    seq        bigint      NOT NULL,
    hash       bytea       NOT NULL,
    anchored_at timestamptz NOT NULL DEFAULT now()
);

-- audit_maintain_partitions creates the monthly partitions from the current month to
-- `ahead` months later (moving any rows for those months out of the default partition)
-- and, when retention is not null, drops partitions that ended more than `retention`
-- ago. It returns one line per action taken. Safe to run concurrently from several
-- replicas: it takes a transaction-scoped advisory lock.
CREATE FUNCTION audit_maintain_partitions(ahead integer DEFAULT 3, retention interval DEFAULT NULL)
RETURNS SETOF text
LANGUAGE plpgsql AS $fn$
DECLARE
    m       date;
    lo      timestamptz;
    hi      timestamptz;
    part    text;
    r       record;
BEGIN
    PERFORM pg_advisory_xact_lock(hashtext('audit_maintain_partitions'));
    FOR i IN 0..ahead LOOP
        m    := (date_trunc('month', now() AT TIME ZONE 'UTC') + make_interval(months => i))::date;
        lo   := (m::timestamp) AT TIME ZONE 'UTC';
        hi   := ((m + interval '1 month')::timestamp) AT TIME ZONE 'UTC';
        part := format('audit_events_y%sm%s', to_char(m, 'YYYY'), to_char(m, 'MM'));
        CONTINUE WHEN to_regclass(part) IS NOT NULL;
        EXECUTE format('CREATE TABLE %I (LIKE audit_events INCLUDING DEFAULTS INCLUDING CONSTRAINTS)', part);
        EXECUTE format('WITH moved AS (DELETE FROM audit_events_default WHERE time >= %L AND time < %L RETURNING *)
                        INSERT INTO %I SELECT * FROM moved', lo, hi, part);
        EXECUTE format('ALTER TABLE audit_events ATTACH PARTITION %I FOR VALUES FROM (%L) TO (%L)', part, lo, hi);
        RETURN NEXT 'created ' || part;
    END LOOP;

    IF retention IS NULL THEN
        RETURN;
    END IF;
    FOR r IN
        SELECT c.relname AS name,
               (regexp_match(pg_get_expr(c.relpartbound, c.oid), 'TO \(''([^'']+)''\)'))[1]::timestamptz AS upper_bound
        FROM pg_inherits i
        JOIN pg_class c ON c.oid = i.inhrelid
        WHERE i.inhparent = 'audit_events'::regclass AND c.relname <> 'audit_events_default'
    LOOP
        CONTINUE WHEN r.upper_bound IS NULL OR r.upper_bound > now() - retention;
        EXECUTE format(
            'INSERT INTO audit_chain_anchors (chain_id, seq, hash)
             SELECT DISTINCT ON (chain_id) chain_id, seq, hash FROM %I ORDER BY chain_id, seq DESC
             ON CONFLICT (chain_id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash, anchored_at = now()
             WHERE excluded.seq > audit_chain_anchors.seq', r.name);
        EXECUTE format('DROP TABLE %I', r.name);
        RETURN NEXT 'dropped ' || r.name;
    END LOOP;
END
$fn$;

SELECT audit_maintain_partitions();
