-- Sessions (DOMAINS.md §8): the proxy's record of each conversation, one checkpoint per turn.
-- The proxy writes them; this API reads them (and the GDPR deletion removes them).

CREATE TABLE ibex_core.sessions (
    id                   uuid PRIMARY KEY,
    org_id               uuid NOT NULL REFERENCES ibex_core.organizations (id),
    agent_id             uuid NOT NULL REFERENCES ibex_core.agents (id),
    external_id          text CHECK (char_length(external_id) BETWEEN 1 AND 255),
    status               text NOT NULL DEFAULT 'active'
                         CHECK (status IN ('active', 'completed', 'abandoned', 'error')),
    model                text NOT NULL DEFAULT '',
    provider             text NOT NULL DEFAULT '',
    directive_version_id uuid,
    turn_count           integer NOT NULL DEFAULT 0 CHECK (turn_count >= 0),
    total_input_tokens   bigint NOT NULL DEFAULT 0 CHECK (total_input_tokens >= 0),
    total_output_tokens  bigint NOT NULL DEFAULT 0 CHECK (total_output_tokens >= 0),
    total_latency_ms     bigint NOT NULL DEFAULT 0 CHECK (total_latency_ms >= 0),
    created_at           timestamptz NOT NULL DEFAULT now(),
    updated_at           timestamptz NOT NULL DEFAULT now(),
    completed_at         timestamptz,
    deleted_at           timestamptz
);
-- An external id names one session of an agent.
CREATE UNIQUE INDEX sessions_external_id_key
    ON ibex_core.sessions (org_id, agent_id, external_id) WHERE external_id IS NOT NULL;
-- The list (newest first) with and without its two equality filters.
CREATE INDEX sessions_org_list_idx
    ON ibex_core.sessions (org_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX sessions_agent_list_idx
    ON ibex_core.sessions (org_id, agent_id, created_at DESC, id DESC) WHERE deleted_at IS NULL;
CREATE INDEX sessions_status_list_idx
    ON ibex_core.sessions (org_id, status, created_at DESC, id DESC) WHERE deleted_at IS NULL;

CREATE TABLE ibex_core.checkpoints (
    id            uuid PRIMARY KEY,
    org_id        uuid NOT NULL REFERENCES ibex_core.organizations (id),
    session_id    uuid NOT NULL REFERENCES ibex_core.sessions (id),
    turn_index    integer NOT NULL CHECK (turn_index >= 0),
    request_id    uuid,
    model         text NOT NULL DEFAULT '',
    provider      text NOT NULL DEFAULT '',
    input_tokens  integer NOT NULL DEFAULT 0 CHECK (input_tokens >= 0),
    output_tokens integer NOT NULL DEFAULT 0 CHECK (output_tokens >= 0),
    latency_ms    integer NOT NULL DEFAULT 0 CHECK (latency_ms >= 0),
    is_streaming  boolean NOT NULL DEFAULT false,
    created_at    timestamptz NOT NULL DEFAULT now(),
    UNIQUE (session_id, turn_index)
);
CREATE INDEX checkpoints_org_idx ON ibex_core.checkpoints (org_id);

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['sessions', 'checkpoints'] LOOP
        EXECUTE format('ALTER TABLE ibex_core.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ibex_core.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON ibex_core.%I
                 USING (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')::uuid)
                 WITH CHECK (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')::uuid)',
            t || '_tenant', t);
        EXECUTE format('GRANT SELECT, DELETE ON ibex_core.%I TO ibex_gdpr', t);
        EXECUTE format('GRANT SELECT ON ibex_core.%I TO ibex_app', t);
    END LOOP;
END
$$;
