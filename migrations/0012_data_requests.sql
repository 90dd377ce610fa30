-- Data-protection requests (docs/domains/data-requests.md): access and erasure for one end
-- user, one operator or a whole organization, their frozen plans, and the signed receipts that
-- prove them.

-- No foreign key to the organization: an organization's own erasure request outlives the
-- organization's row until its receipt is written, then goes with the rest of it.
CREATE TABLE ibex_core.data_requests (
    id                 uuid PRIMARY KEY,
    org_id             uuid NOT NULL,
    type               text NOT NULL CHECK (type IN ('access', 'erasure')),
    subject_kind       text NOT NULL CHECK (subject_kind IN ('organization', 'user', 'end_user')),
    -- The subject's identifiers, as given; NULL once an erasure succeeded (the commitment stays).
    subject            jsonb,
    subject_salt       text NOT NULL,
    subject_commitment text NOT NULL CHECK (subject_commitment ~ '^[0-9a-f]{64}$'),
    reference          text CHECK (char_length(reference) BETWEEN 1 AND 255),
    status             text NOT NULL DEFAULT 'received'
                       CHECK (status IN ('received', 'planning', 'awaiting_confirmation', 'running',
                                         'succeeded', 'canceled', 'rejected')),
    rejection_code     text,
    received_at        timestamptz NOT NULL,
    due_at             timestamptz NOT NULL,
    extended_at        timestamptz,
    extension_reason   text CHECK (char_length(extension_reason) BETWEEN 1 AND 1000),
    -- Per store, how many items the plan froze: {"sessions": 12, ...}.
    plan               jsonb,
    -- Per store: status, items_total, items_done, remaining, last_error.
    progress           jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(progress) = 'object'),
    -- Digest of the frozen item ids (SHA-256 over "store\titem\n" in order).
    items_digest       text,
    archive_key        text,
    archive_sha256     text,
    archive_bytes      bigint,
    archive_expires_at timestamptz,
    archive_purged_at  timestamptz,
    receipt_id         uuid,
    created_by         uuid,
    -- The API request that last moved it (filed, confirmed): the worker's events name it.
    request_id         uuid DEFAULT NULLIF(current_setting('app.request_id', true), '')::uuid,
    created_at         timestamptz NOT NULL DEFAULT now(),
    updated_at         timestamptz NOT NULL DEFAULT now(),
    confirmed_at       timestamptz,
    completed_at       timestamptz,
    -- The worker's claim: one replica at a time, fenced by `attempts`.
    attempts           integer NOT NULL DEFAULT 0,
    lease_until        timestamptz
);
CREATE INDEX data_requests_list_idx ON ibex_core.data_requests (org_id, created_at DESC, id DESC);
CREATE INDEX data_requests_work_idx ON ibex_core.data_requests (created_at)
    WHERE status IN ('received', 'planning', 'running');
CREATE INDEX data_requests_archive_idx ON ibex_core.data_requests (archive_expires_at)
    WHERE archive_key IS NOT NULL AND archive_purged_at IS NULL;

-- The frozen plan: every item (a row id, an object key) the request covers, per store.
CREATE TABLE ibex_core.data_request_items (
    request_id uuid NOT NULL REFERENCES ibex_core.data_requests (id) ON DELETE CASCADE,
    org_id     uuid NOT NULL,
    store      text NOT NULL,
    item       text NOT NULL,
    -- What the archive needs of an item it cannot read again (nothing personal).
    detail     jsonb,
    done       boolean NOT NULL DEFAULT false,
    PRIMARY KEY (request_id, store, item)
);

-- Signed receipts of succeeded requests: nothing personal, kept after the organization is gone,
-- chained per organization by the previous receipt's SHA-256.
CREATE TABLE ibex_core.data_request_receipts (
    id         uuid PRIMARY KEY,
    org_id     uuid NOT NULL,
    request_id uuid NOT NULL UNIQUE,
    sequence   bigint NOT NULL,
    -- The receipt exactly as signed (the JWS payload).
    receipt    text NOT NULL,
    jws        text NOT NULL,
    sha256     text NOT NULL CHECK (sha256 ~ '^[0-9a-f]{64}$'),
    created_at timestamptz NOT NULL DEFAULT now(),
    UNIQUE (org_id, sequence)
);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['data_requests', 'data_request_items', 'data_request_receipts'] LOOP
        EXECUTE format('ALTER TABLE ibex_core.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ibex_core.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON ibex_core.%I
                 USING (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')::uuid)
                 WITH CHECK (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')::uuid)',
            t || '_tenant', t);
        EXECUTE format('GRANT SELECT, INSERT, UPDATE, DELETE ON ibex_core.%I TO ibex_gdpr', t);
    END LOOP;
END
$$;
GRANT SELECT, INSERT, UPDATE ON ibex_core.data_requests TO ibex_app;
GRANT SELECT, UPDATE, DELETE ON ibex_core.data_request_items TO ibex_app;
GRANT SELECT ON ibex_core.data_request_receipts TO ibex_app;

-- An erasure works as ibex_gdpr: it tombstones users, marks purged exports, clears an erased
-- operator's address and user agent from the audit trail, and enqueues its events.
GRANT UPDATE ON ibex_core.users, ibex_core.memory_exports TO ibex_gdpr;
GRANT UPDATE (total_sessions, total_memories) ON ibex_core.agents TO ibex_gdpr;
GRANT UPDATE (client_ip, user_agent) ON ibex_core.audit_events TO ibex_gdpr;
GRANT INSERT ON ibex_core.outbox, ibex_core.audit_events TO ibex_gdpr;

-- Audit events stay append-only, except that ibex_gdpr may delete them (an organization's
-- erasure) or clear who-was-where (an operator's erasure), nothing else.
CREATE OR REPLACE FUNCTION ibex_core.audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'ibex_gdpr' THEN
        RETURN OLD;
    END IF;
    IF TG_OP = 'UPDATE' AND current_user = 'ibex_gdpr'
       AND NEW.client_ip IS NULL AND NEW.user_agent IS NULL
       AND (NEW.id, NEW.org_id, NEW.occurred_at, NEW.actor_user_id, NEW.actor_token_id, NEW.action,
            NEW.target_type, NEW.target_id, NEW.request_id, NEW.changed_fields)
           IS NOT DISTINCT FROM
           (OLD.id, OLD.org_id, OLD.occurred_at, OLD.actor_user_id, OLD.actor_token_id, OLD.action,
            OLD.target_type, OLD.target_id, OLD.request_id, OLD.changed_fields) THEN
        RETURN NEW;
    END IF;
    RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;

-- An export whose file held an erased memory is deleted with it: the job shows `purged`.
ALTER TABLE ibex_core.memory_exports DROP CONSTRAINT memory_exports_status_check;
ALTER TABLE ibex_core.memory_exports ADD CONSTRAINT memory_exports_status_check
    CHECK (status IN ('pending', 'running', 'succeeded', 'failed', 'purged'));
