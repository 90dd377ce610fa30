-- Core tenancy schema: organizations, users, agents, the application role and row-level security.
--
-- Every org-scoped table has `org_id` and a policy that shows (and accepts) a row only when the
-- transaction-local setting `app.current_org_id` equals it; an unset setting means no rows, never
-- an error. The service runs every request as `ibex_app` inside a transaction that set it.

CREATE SCHEMA IF NOT EXISTS ibex_core;

-- Roles are cluster-wide: another database of the cluster may have created it already.
DO $$
BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = 'ibex_app') THEN
        CREATE ROLE ibex_app NOLOGIN;
    END IF;
END
$$;

-- The login role that migrates is, by default, the one the service connects as; a deployment
-- that serves with another login role grants it `ibex_app` itself.
DO $$
BEGIN
    IF NOT pg_has_role(current_user, 'ibex_app', 'MEMBER') THEN
        EXECUTE format('GRANT ibex_app TO %I', current_user);
    END IF;
END
$$;

GRANT USAGE ON SCHEMA ibex_core TO ibex_app;

CREATE TABLE ibex_core.organizations (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    name          text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    slug          text NOT NULL CHECK (slug ~ '^[a-z0-9-]+$' AND char_length(slug) <= 100),
    tier          text NOT NULL DEFAULT 'free'
                  CHECK (tier IN ('free', 'pro', 'enterprise')),
    status        text NOT NULL DEFAULT 'active'
                  CHECK (status IN ('active', 'suspended', 'cancelled', 'trial')),
    billing_email text,
    settings      jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(settings) = 'object'),
    created_at    timestamptz NOT NULL DEFAULT now(),
    updated_at    timestamptz NOT NULL DEFAULT now(),
    deleted_at    timestamptz
);
CREATE UNIQUE INDEX organizations_slug_key ON ibex_core.organizations (slug);

CREATE TABLE ibex_core.users (
    id         uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id     uuid NOT NULL REFERENCES ibex_core.organizations (id),
    email      text NOT NULL CHECK (char_length(email) BETWEEN 3 AND 320),
    name       text NOT NULL DEFAULT '' CHECK (char_length(name) <= 255),
    role       text NOT NULL DEFAULT 'member'
               CHECK (role IN ('owner', 'admin', 'member', 'viewer')),
    status     text NOT NULL DEFAULT 'active'
               CHECK (status IN ('active', 'invited', 'suspended', 'deactivated')),
    created_at timestamptz NOT NULL DEFAULT now(),
    updated_at timestamptz NOT NULL DEFAULT now(),
    deleted_at timestamptz
);
-- Emails compare case-insensitively, among live users only.
CREATE UNIQUE INDEX users_org_email_live_key
    ON ibex_core.users (org_id, lower(email)) WHERE deleted_at IS NULL;
-- The list order of §1 (newest first), per organization.
CREATE INDEX users_org_list_idx
    ON ibex_core.users (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE ibex_core.agents (
    id             uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    org_id         uuid NOT NULL REFERENCES ibex_core.organizations (id),
    created_by     uuid REFERENCES ibex_core.users (id) ON DELETE SET NULL,
    name           text NOT NULL CHECK (char_length(name) BETWEEN 1 AND 255),
    slug           text NOT NULL CHECK (slug ~ '^[a-z0-9-]+$' AND char_length(slug) <= 100),
    status         text NOT NULL DEFAULT 'active'
                   CHECK (status IN ('active', 'paused', 'suspended', 'archived')),
    config         jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(config) = 'object'),
    total_sessions integer NOT NULL DEFAULT 0 CHECK (total_sessions >= 0),
    total_memories integer NOT NULL DEFAULT 0 CHECK (total_memories >= 0),
    last_active_at timestamptz,
    created_at     timestamptz NOT NULL DEFAULT now(),
    updated_at     timestamptz NOT NULL DEFAULT now(),
    deleted_at     timestamptz
);
-- A deleted agent frees its slug; two organizations may share one.
CREATE UNIQUE INDEX agents_org_slug_live_key
    ON ibex_core.agents (org_id, slug) WHERE deleted_at IS NULL;
CREATE INDEX agents_org_list_idx
    ON ibex_core.agents (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX agents_org_status_list_idx
    ON ibex_core.agents (org_id, status, created_at DESC, id DESC) WHERE deleted_at IS NULL;

-- Row-level security, forced so that even the tables' owner is subject to it (a superuser still
-- bypasses it, which is why the service switches to ibex_app in every request transaction).
ALTER TABLE ibex_core.organizations ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.organizations FORCE ROW LEVEL SECURITY;
CREATE POLICY organizations_tenant ON ibex_core.organizations
    USING (id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

ALTER TABLE ibex_core.users ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.users FORCE ROW LEVEL SECURITY;
CREATE POLICY users_tenant ON ibex_core.users
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

ALTER TABLE ibex_core.agents ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.agents FORCE ROW LEVEL SECURITY;
CREATE POLICY agents_tenant ON ibex_core.agents
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

-- Organizations are created by the platform's sign-up flow, never through ibex_app.
GRANT SELECT, UPDATE ON ibex_core.organizations TO ibex_app;
GRANT SELECT, INSERT, UPDATE ON ibex_core.users TO ibex_app;
GRANT SELECT, INSERT, UPDATE ON ibex_core.agents TO ibex_app;
