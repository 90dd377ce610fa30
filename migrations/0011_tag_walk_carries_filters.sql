-- A list filtered by a tag walks the tag's rows (memory_tags_list_idx); until now those rows
-- carried only the memory's agent and creation time, so every other filter (status, category,
-- source, live) was checked on the joined memory: `tag=<common>&status=pending_review` read
-- ~87 000 buffers for a first page that needs ~80 (docs: issue 27, part 4). The tag rows now
-- carry those filters too, kept equal to their memory's by triggers in the same transaction,
-- and the walk's indexes lead with them, so every filter combination walks only matching rows.

ALTER TABLE ibex_core.memory_tags
    ADD COLUMN status   text,
    ADD COLUMN category text,
    ADD COLUMN source   text,
    ADD COLUMN live     boolean;
UPDATE ibex_core.memory_tags t
    SET status = m.status, category = m.category, source = m.source, live = m.deleted_at IS NULL
    FROM ibex_core.memories m
    WHERE m.id = t.memory_id;
ALTER TABLE ibex_core.memory_tags
    ALTER COLUMN status SET NOT NULL,
    ALTER COLUMN category SET NOT NULL,
    ALTER COLUMN source SET NOT NULL,
    ALTER COLUMN live SET NOT NULL;

-- A new tag row copies its memory's values (writers of tags need not know them).
CREATE OR REPLACE FUNCTION ibex_core.memory_tags_fill() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    SELECT m.agent_id, m.created_at, m.status, m.category, m.source, m.deleted_at IS NULL
      INTO NEW.agent_id, NEW.created_at, NEW.status, NEW.category, NEW.source, NEW.live
      FROM ibex_core.memories m WHERE m.id = NEW.memory_id;
    RETURN NEW;
END;
$$;

-- A memory whose status, category, source or deletion changes takes its tag rows along: one
-- statement per UPDATE statement (a bulk deletion of 10 000 memories is one join, not 10 000
-- statements), touching only the memories whose values moved.
CREATE FUNCTION ibex_core.memory_tags_follow() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    UPDATE ibex_core.memory_tags t
       SET status = n.status, category = n.category, source = n.source,
           live = n.deleted_at IS NULL
      FROM new_rows n JOIN old_rows o ON o.id = n.id
     WHERE t.memory_id = n.id AND t.org_id = n.org_id
       AND (o.status, o.category, o.source, o.deleted_at IS NULL)
           IS DISTINCT FROM (n.status, n.category, n.source, n.deleted_at IS NULL);
    RETURN NULL;
END;
$$;
CREATE TRIGGER memory_tags_follow AFTER UPDATE ON ibex_core.memories
    REFERENCING OLD TABLE AS old_rows NEW TABLE AS new_rows
    FOR EACH STATEMENT EXECUTE FUNCTION ibex_core.memory_tags_follow();

-- The tag walk within a status, and within a status and a category or a source: the same three
-- shapes the agent walk has (memories_agent_list_idx and its category and source siblings).
DROP INDEX ibex_core.memory_tags_list_idx;
CREATE INDEX memory_tags_list_idx
    ON ibex_core.memory_tags (org_id, agent_id, tag, status, created_at DESC, memory_id DESC)
    WHERE live;
CREATE INDEX memory_tags_category_list_idx
    ON ibex_core.memory_tags (org_id, agent_id, tag, status, category, created_at DESC, memory_id DESC)
    WHERE live;
CREATE INDEX memory_tags_source_list_idx
    ON ibex_core.memory_tags (org_id, agent_id, tag, status, source, created_at DESC, memory_id DESC)
    WHERE live;

-- The trigger runs as the role that updates the memory (the API's `ibex_app`, under row-level
-- security): it may change these four columns of the tag rows and nothing else.
GRANT UPDATE (status, category, source, live) ON ibex_core.memory_tags TO ibex_app;
