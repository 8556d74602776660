-- A durable log of every change that withdraws or narrows an API token, so that a
-- replica whose notification listener was away (a PostgreSQL restart, a failover, a
-- network partition) catches up on all of them when it reconnects, not only on those
-- NOTIFY happened to deliver (internal/tokens, catchUp).
--
-- Each row records the id of the writing transaction. A replica remembers the
-- oldest transaction still running when it last read the log (pg_snapshot_xmin of
-- that read's snapshot) and later reads every row whose transaction is not older:
-- a transaction older than that mark had finished when the log was last read, so
-- its row was seen then, whatever order transactions committed in. Rows are kept
-- for a week; a replica that has not read the log for that long empties its token
-- cache instead.

CREATE TABLE api_token_changes (
    seq        bigserial   PRIMARY KEY,
    token_id   text        NOT NULL,
    xid        bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    changed_at timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX api_token_changes_xid_idx ON api_token_changes (xid);

-- The triggers of 0002 fire on exactly the changes to log; the function they call
-- now logs the change before announcing it.
CREATE OR REPLACE FUNCTION api_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO api_token_changes (token_id) VALUES (OLD.id);
    PERFORM pg_notify('modgate_api_tokens', OLD.id);
    RETURN NULL;
END;
$$;
