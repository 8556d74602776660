-- modgate API tokens: long-lived, scoped, expiring, revocable credentials for CI and
-- for developers without OIDC (internal/tokens, `modgate token`).
--
-- A token's secret is mgt_<id>_<random>. Only SHA-256(secret) is stored: the random
-- part carries 256 bits, so a slow password hash would add nothing but latency. The id
-- is public (it is printed by `modgate token list`, recorded in the audit trail and
-- used to revoke) and is how a presented secret finds its row.
--
-- Verifying replicas cache verified tokens for a couple of seconds. The trigger below
-- announces every change that can withdraw or narrow a token on the channel
-- modgate_api_tokens (payload: the id), so every replica evicts it at once, whether the
-- change came from `modgate token revoke` or from an operator's UPDATE in psql.
-- last_used_at is deliberately not announced: it changes all the time and narrows
-- nothing.

CREATE TABLE api_tokens (
    id           text        PRIMARY KEY,
    secret_hash  bytea       NOT NULL CHECK (octet_length(secret_hash) = 32),
    subject      text        NOT NULL CHECK (subject <> ''),
    teams        text[]      NOT NULL DEFAULT '{}',
    scopes       text[]      NOT NULL DEFAULT '{}',  -- empty: every right of the subject
    description  text        NOT NULL DEFAULT '',
    created_at   timestamptz NOT NULL DEFAULT now(),
    created_by   text        NOT NULL DEFAULT '',
    expires_at   timestamptz,                        -- NULL: never expires
    revoked_at   timestamptz,
    revoked_by   text        NOT NULL DEFAULT '',
    last_used_at timestamptz                         -- written at most once a minute per token
);

CREATE INDEX api_tokens_subject_idx ON api_tokens (subject, created_at);

CREATE FUNCTION api_tokens_notify() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('modgate_api_tokens', OLD.id);
    RETURN NULL;
END;
$$;

CREATE TRIGGER api_tokens_changed
    AFTER UPDATE ON api_tokens
    FOR EACH ROW
    WHEN (OLD.revoked_at  IS DISTINCT FROM NEW.revoked_at
       OR OLD.expires_at  IS DISTINCT FROM NEW.expires_at
       OR OLD.secret_hash IS DISTINCT FROM NEW.secret_hash
       OR OLD.subject     IS DISTINCT FROM NEW.subject
       OR OLD.teams       IS DISTINCT FROM NEW.teams
       OR OLD.scopes      IS DISTINCT FROM NEW.scopes
       OR OLD.id          IS DISTINCT FROM NEW.id)
    EXECUTE FUNCTION api_tokens_notify();

CREATE TRIGGER api_tokens_deleted
    AFTER DELETE ON api_tokens
    FOR EACH ROW
    EXECUTE FUNCTION api_tokens_notify();
