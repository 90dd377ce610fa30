-- Memories (DOMAINS.md §7) with their tags, append-only history and relationships, and the export
-- jobs that write them to the object store (§10). Every table is org-scoped under row-level
-- security like the rest of ibex_core.

-- UUID v7 made by the database, for rows a single statement creates by the thousand (the history
-- rows of a bulk delete): 48 bits of Unix milliseconds, then random bits, version 7.
CREATE FUNCTION ibex_core.uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send(floor(extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

CREATE TABLE ibex_core.memories (
    id                uuid PRIMARY KEY,
    org_id            uuid NOT NULL REFERENCES ibex_core.organizations (id),
    agent_id          uuid NOT NULL REFERENCES ibex_core.agents (id),
    -- The sessions table arrives with the sessions domain.
    session_id        uuid,
    content           text NOT NULL CHECK (char_length(content) BETWEEN 1 AND 8192),
    content_hash      text NOT NULL CHECK (content_hash ~ '^[0-9a-f]{64}$'),
    category          text NOT NULL
                      CHECK (category IN ('factual', 'preference', 'behavioral', 'episodic', 'procedural')),
    source            text NOT NULL DEFAULT 'extracted'
                      CHECK (source IN ('extracted', 'user_provided', 'imported', 'inferred')),
    status            text NOT NULL DEFAULT 'active'
                      CHECK (status IN ('active', 'superseded', 'merged', 'archived', 'pending_review')),
    confidence        real NOT NULL DEFAULT 1 CHECK (confidence BETWEEN 0 AND 1),
    retrieval_count   integer NOT NULL DEFAULT 0 CHECK (retrieval_count >= 0),
    last_retrieved_at timestamptz,
    metadata          jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(metadata) = 'object'),
    created_at        timestamptz NOT NULL DEFAULT now(),
    updated_at        timestamptz NOT NULL DEFAULT now(),
    deleted_at        timestamptz
);
-- Every list filters on status (default `active`): one index walks an agent's memories of a
-- status newest first from any cursor; the other filters are checked on the rows it yields.
CREATE INDEX memories_agent_list_idx
    ON ibex_core.memories (org_id, agent_id, status, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

CREATE TABLE ibex_core.memory_tags (
    memory_id uuid NOT NULL REFERENCES ibex_core.memories (id),
    org_id    uuid NOT NULL REFERENCES ibex_core.organizations (id),
    tag       text NOT NULL CHECK (char_length(tag) BETWEEN 1 AND 100),
    PRIMARY KEY (memory_id, tag)
);
-- "Memories carrying this tag", for a rare tag the cheaper side to start from.
CREATE INDEX memory_tags_tag_idx ON ibex_core.memory_tags (org_id, tag, memory_id);

CREATE TABLE ibex_core.memory_versions (
    id         uuid PRIMARY KEY,
    memory_id  uuid NOT NULL REFERENCES ibex_core.memories (id),
    org_id     uuid NOT NULL REFERENCES ibex_core.organizations (id),
    operation  text NOT NULL
               CHECK (operation IN ('create', 'update', 'supersede', 'merge', 'archive', 'delete')),
    actor      uuid,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX memory_versions_memory_idx ON ibex_core.memory_versions (memory_id);
CREATE INDEX memory_versions_org_idx ON ibex_core.memory_versions (org_id);

CREATE TABLE ibex_core.memory_relationships (
    id               uuid PRIMARY KEY,
    org_id           uuid NOT NULL REFERENCES ibex_core.organizations (id),
    source_memory_id uuid NOT NULL REFERENCES ibex_core.memories (id),
    target_memory_id uuid NOT NULL REFERENCES ibex_core.memories (id),
    relation         text NOT NULL CHECK (char_length(relation) BETWEEN 1 AND 100)
);
CREATE INDEX memory_relationships_source_idx ON ibex_core.memory_relationships (source_memory_id);
CREATE INDEX memory_relationships_target_idx ON ibex_core.memory_relationships (target_memory_id);
CREATE INDEX memory_relationships_org_idx ON ibex_core.memory_relationships (org_id);

-- History is append-only for everyone but the GDPR deletion (which only ever deletes).
CREATE FUNCTION ibex_core.memory_versions_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'memory versions are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER memory_versions_no_update BEFORE UPDATE ON ibex_core.memory_versions
    FOR EACH ROW EXECUTE FUNCTION ibex_core.memory_versions_append_only();

-- Background exports of an agent's memories into the export bucket. A job is claimed by one
-- replica at a time (FOR UPDATE SKIP LOCKED) under a lease the worker keeps renewing; a job whose
-- lease ran out (its worker died) is claimed again.
CREATE TABLE ibex_core.memory_exports (
    id          uuid PRIMARY KEY,
    org_id      uuid NOT NULL REFERENCES ibex_core.organizations (id),
    agent_id    uuid NOT NULL REFERENCES ibex_core.agents (id),
    format      text NOT NULL CHECK (format IN ('csv', 'json')),
    -- The list filters, as the API normalized them.
    filters     jsonb NOT NULL DEFAULT '{}' CHECK (jsonb_typeof(filters) = 'object'),
    status      text NOT NULL DEFAULT 'pending'
                CHECK (status IN ('pending', 'running', 'succeeded', 'failed')),
    row_count   bigint,
    size_bytes  bigint,
    -- A code (OBJECT_STORE_UNAVAILABLE, …), never a message or a stack.
    error       text,
    object_key  text,
    attempts    integer NOT NULL DEFAULT 0,
    -- Running: the worker's lease. Pending: not to be claimed before (a retry's backoff).
    lease_until timestamptz,
    created_by  uuid,
    created_at  timestamptz NOT NULL DEFAULT now(),
    started_at  timestamptz,
    finished_at timestamptz
);
CREATE INDEX memory_exports_claim_idx ON ibex_core.memory_exports (created_at)
    WHERE status IN ('pending', 'running');
CREATE INDEX memory_exports_org_idx ON ibex_core.memory_exports (org_id);

-- The proxy's hot cache forgets deleted memories: the outbox learns ZREM.
ALTER TABLE ibex_core.outbox ADD COLUMN zrem_key text;
ALTER TABLE ibex_core.outbox ADD COLUMN zrem_members text[];

DO $$
DECLARE
    t text;
BEGIN
    FOREACH t IN ARRAY ARRAY['memories', 'memory_tags', 'memory_versions',
                             'memory_relationships', 'memory_exports'] LOOP
        EXECUTE format('ALTER TABLE ibex_core.%I ENABLE ROW LEVEL SECURITY', t);
        EXECUTE format('ALTER TABLE ibex_core.%I FORCE ROW LEVEL SECURITY', t);
        EXECUTE format(
            'CREATE POLICY %I ON ibex_core.%I
                 USING (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')::uuid)
                 WITH CHECK (org_id = NULLIF(current_setting(''app.current_org_id'', true), '''')::uuid)',
            t || '_tenant', t);
        EXECUTE format('GRANT SELECT, DELETE ON ibex_core.%I TO ibex_gdpr', t);
    END LOOP;
END
$$;

-- Operators read and soft-delete memories; they never write them through this API.
GRANT SELECT, UPDATE ON ibex_core.memories TO ibex_app;
GRANT SELECT ON ibex_core.memory_tags TO ibex_app;
GRANT SELECT, INSERT ON ibex_core.memory_versions TO ibex_app;
GRANT SELECT, DELETE ON ibex_core.memory_relationships TO ibex_app;
GRANT SELECT, INSERT, UPDATE ON ibex_core.memory_exports TO ibex_app;
GRANT EXECUTE ON FUNCTION ibex_core.uuid_v7() TO ibex_app;
