-- Idempotency keys: the first answer to a POST sent with `Idempotency-Key`, kept for a day so a
-- retry gets it again instead of doing the work twice. Scoped to the organization and the caller
-- (the user, else the agent, else the token). A row without a status is a request still running;
-- `locked_until` bounds how long a replica that died mid-request can hold its key.
CREATE TABLE ibex_core.idempotency_keys (
    org_id       uuid NOT NULL,
    caller_id    uuid NOT NULL,
    key          text NOT NULL CHECK (key ~ '^[!-~]{1,255}$'),
    -- SHA-256 of the method, the path with its query and the body.
    fingerprint  bytea NOT NULL,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    locked_until timestamptz,
    status       smallint,
    -- [[name, value], ...] of the headers worth replaying (Content-Type, Location, ETag).
    headers      jsonb,
    body         bytea,
    -- False for an answer that held a secret (a token's): stored without its body, never replayed.
    replayable   boolean NOT NULL DEFAULT true,
    PRIMARY KEY (org_id, caller_id, key)
);

-- The sweep's access path.
CREATE INDEX idempotency_keys_expiry_idx ON ibex_core.idempotency_keys (expires_at);
CREATE INDEX idempotency_keys_org_idx ON ibex_core.idempotency_keys (org_id);

ALTER TABLE ibex_core.idempotency_keys ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.idempotency_keys FORCE ROW LEVEL SECURITY;
CREATE POLICY idempotency_keys_tenant ON ibex_core.idempotency_keys
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE, DELETE ON ibex_core.idempotency_keys TO ibex_app;
GRANT SELECT, DELETE ON ibex_core.idempotency_keys TO ibex_gdpr;
