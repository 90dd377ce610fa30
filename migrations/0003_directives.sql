-- Directives with an append-only version history (DOMAINS.md §6).

CREATE TABLE ibex_core.directives (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES ibex_core.organizations (id),
    agent_id          uuid NOT NULL UNIQUE REFERENCES ibex_core.agents (id),
    active_version_id uuid,
    injection_mode    text NOT NULL DEFAULT 'system_first'
                      CHECK (injection_mode IN ('system_first', 'system_append', 'user_prepend')),
    is_active         boolean NOT NULL DEFAULT true,
    -- The newest version's number: versions count 1, 2, 3… without gaps because each new one is
    -- numbered under this row's lock.
    last_version_num  integer NOT NULL DEFAULT 0 CHECK (last_version_num >= 0),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX directives_org_idx ON ibex_core.directives (org_id);

CREATE TABLE ibex_core.directive_versions (
    id           uuid PRIMARY KEY,
    directive_id uuid NOT NULL REFERENCES ibex_core.directives (id),
    org_id       uuid NOT NULL REFERENCES ibex_core.organizations (id),
    version_num  integer NOT NULL CHECK (version_num > 0),
    content      text NOT NULL CHECK (octet_length(content) BETWEEN 1 AND 32768),
    content_hash text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    created_by   uuid,
    created_at   timestamptz NOT NULL DEFAULT now(),
    UNIQUE (directive_id, version_num)
);
CREATE INDEX directive_versions_org_idx ON ibex_core.directive_versions (org_id);

-- Removing a version (only the GDPR deletion can) clears a pointer to it.
ALTER TABLE ibex_core.directives
    ADD CONSTRAINT directives_active_version_fkey FOREIGN KEY (active_version_id)
    REFERENCES ibex_core.directive_versions (id) ON DELETE SET NULL;

-- Versions are append-only, enforced by the database for everyone: no grant of UPDATE, and a
-- trigger for any role that could (the owner, a superuser).
CREATE FUNCTION ibex_core.directive_versions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'directive versions are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER directive_versions_no_update BEFORE UPDATE ON ibex_core.directive_versions
    FOR EACH ROW EXECUTE FUNCTION ibex_core.directive_versions_append_only();

ALTER TABLE ibex_core.directives ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.directives FORCE ROW LEVEL SECURITY;
CREATE POLICY directives_tenant ON ibex_core.directives
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

ALTER TABLE ibex_core.directive_versions ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.directive_versions FORCE ROW LEVEL SECURITY;
CREATE POLICY directive_versions_tenant ON ibex_core.directive_versions
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

GRANT SELECT, INSERT, UPDATE ON ibex_core.directives TO ibex_app;
GRANT SELECT, INSERT ON ibex_core.directive_versions TO ibex_app;
GRANT SELECT, DELETE ON ibex_core.directives, ibex_core.directive_versions TO ibex_gdpr;
