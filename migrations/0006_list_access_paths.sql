-- Every filter of every list gets an access path ordered like the list (newest first), so a page
-- costs the same however many rows the filter skips (issue: a tag on 1 memory in 1 000 walked
-- ~20 000 entries of the agent's list index per page).

-- Memories by tag: the tag rows carry what the list orders and cursors by (the memory's agent
-- and creation time, both immutable), filled in by a trigger so that writers of tags need not
-- know them. The list walks this index from the cursor and joins each memory by its key.
ALTER TABLE ibex_core.memory_tags
    ADD COLUMN agent_id   uuid,
    ADD COLUMN created_at timestamptz;
UPDATE ibex_core.memory_tags t
    SET agent_id = m.agent_id, created_at = m.created_at
    FROM ibex_core.memories m
    WHERE m.id = t.memory_id;
ALTER TABLE ibex_core.memory_tags
    ALTER COLUMN agent_id SET NOT NULL,
    ALTER COLUMN created_at SET NOT NULL;

CREATE FUNCTION ibex_core.memory_tags_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT m.agent_id, m.created_at INTO NEW.agent_id, NEW.created_at
    FROM ibex_core.memories m WHERE m.id = NEW.memory_id;
    RETURN NEW;
END;
$$;
CREATE TRIGGER memory_tags_fill BEFORE INSERT OR UPDATE OF memory_id ON ibex_core.memory_tags
    FOR EACH ROW EXECUTE FUNCTION ibex_core.memory_tags_fill();

CREATE INDEX memory_tags_list_idx
    ON ibex_core.memory_tags (org_id, agent_id, tag, created_at DESC, memory_id DESC);

-- A memory's creation time orders its tags: it must not move under them.
CREATE FUNCTION ibex_core.memories_created_at_fixed() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF NEW.created_at IS DISTINCT FROM OLD.created_at OR NEW.agent_id IS DISTINCT FROM OLD.agent_id THEN
        RAISE EXCEPTION 'a memory''s created_at and agent_id are immutable'
            USING ERRCODE = 'check_violation';
    END IF;
    RETURN NEW;
END;
$$;
CREATE TRIGGER memories_created_at_fixed BEFORE UPDATE OF created_at, agent_id ON ibex_core.memories
    FOR EACH ROW EXECUTE FUNCTION ibex_core.memories_created_at_fixed();

-- Memories by category and by source, within a status (every list has one, default `active`).
CREATE INDEX memories_agent_category_list_idx
    ON ibex_core.memories (org_id, agent_id, status, category, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
CREATE INDEX memories_agent_source_list_idx
    ON ibex_core.memories (org_id, agent_id, status, source, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;

-- Sessions of one agent in one status.
CREATE INDEX sessions_agent_status_list_idx
    ON ibex_core.sessions (org_id, agent_id, status, created_at DESC, id DESC)
    WHERE deleted_at IS NULL;
