-- The h1: hash of the module zip a publish or delete concerned, so the audit trail
-- says exactly which bytes a team published or an admin removed.
ALTER TABLE audit_events ADD COLUMN content_hash text NOT NULL DEFAULT '';
