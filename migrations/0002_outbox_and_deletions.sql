-- Platform events that are never lost (a transactional outbox), and the GDPR deletion of an
-- organization (a resumable job), with the role that alone may hard-delete an organization's rows.

-- Events are written in the same transaction as the change they announce, and published to Redis
-- by a background task in id order (so per organization in commit order), at least once.
CREATE TABLE ibex_core.outbox (
    id           bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    org_id       uuid NOT NULL,
    -- PUBLISH `payload` on `channel` (when both are set), then DEL `delete_key` (when set).
    channel      text,
    payload      text,
    delete_key   text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    delivered_at timestamptz,
    attempts     integer NOT NULL DEFAULT 0,
    CHECK ((channel IS NULL) = (payload IS NULL)),
    CHECK (channel IS NOT NULL OR delete_key IS NOT NULL)
);
CREATE INDEX outbox_undelivered_idx ON ibex_core.outbox (id) WHERE delivered_at IS NULL;
CREATE INDEX outbox_org_idx ON ibex_core.outbox (org_id);

-- One row per requested organization deletion; the job's progress, kept after the organization
-- itself is gone (it holds no personal data).
CREATE TABLE ibex_core.org_deletions (
    org_id       uuid PRIMARY KEY,
    state        text NOT NULL DEFAULT 'pending' CHECK (state IN ('pending', 'running', 'done')),
    requested_at timestamptz NOT NULL DEFAULT now(),
    started_at   timestamptz,
    finished_at  timestamptz,
    rows_deleted bigint NOT NULL DEFAULT 0
);

ALTER TABLE ibex_core.outbox ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.outbox FORCE ROW LEVEL SECURITY;
CREATE POLICY outbox_tenant ON ibex_core.outbox
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

ALTER TABLE ibex_core.org_deletions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.org_deletions FORCE ROW LEVEL SECURITY;
CREATE POLICY org_deletions_tenant ON ibex_core.org_deletions
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

GRANT INSERT ON ibex_core.outbox TO ibex_app;
GRANT SELECT, INSERT ON ibex_core.org_deletions TO ibex_app;
-- The GDPR deletion job runs as `ibex_gdpr` with the organization set, so row-level security
-- confines even its DELETEs to that one organization.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_gdpr') THEN
        CREATE ROLE ibex_gdpr NOLOGIN;
    END IF;
    IF NOT pg_has_role(current_user, 'ibex_gdpr', 'MEMBER') THEN
        EXECUTE format('GRANT ibex_gdpr TO %I', current_user);
    END IF;
END
$$;
GRANT USAGE ON SCHEMA ibex_core TO ibex_gdpr;
GRANT SELECT, DELETE ON ibex_core.organizations, ibex_core.users, ibex_core.agents,
    ibex_core.outbox TO ibex_gdpr;
GRANT SELECT, UPDATE ON ibex_core.org_deletions TO ibex_gdpr;
