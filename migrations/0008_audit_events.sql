-- The audit trail: one row per change made through the API, written in the same transaction as
-- the change (so a change without its event, or an event without its change, cannot commit).
-- Append-only for everyone but the GDPR deletion: no UPDATE or DELETE grant to the app role, and
-- a trigger that refuses both to any role that could (the owner, a superuser), except DELETE by
-- `ibex_gdpr`, which removes an organization's events with the rest of it.
CREATE TABLE ibex_core.audit_events (
    id             uuid PRIMARY KEY,
    org_id         uuid NOT NULL,
    occurred_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    actor_user_id  uuid,
    actor_token_id uuid,
    action         text NOT NULL CHECK (action ~ '^[a-z_]+\.[a-z_]+$'),
    target_type    text NOT NULL,
    target_id      text NOT NULL,
    request_id     text NOT NULL,
    client_ip      text,
    user_agent     text,
    -- Names only, never values: values can hold secrets or content.
    changed_fields text[] NOT NULL DEFAULT '{}'
);

-- The list, newest first, and one access path ordered like it per filter.
CREATE INDEX audit_events_list_idx ON ibex_core.audit_events (org_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_actor_idx
    ON ibex_core.audit_events (org_id, actor_user_id, occurred_at DESC, id DESC);
CREATE INDEX audit_events_action_idx
    ON ibex_core.audit_events (org_id, action, occurred_at DESC, id DESC);
CREATE INDEX audit_events_target_type_idx
    ON ibex_core.audit_events (org_id, target_type, occurred_at DESC, id DESC);
CREATE INDEX audit_events_target_id_idx
    ON ibex_core.audit_events (org_id, target_id, occurred_at DESC, id DESC);

CREATE FUNCTION ibex_core.audit_events_append_only() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'DELETE' AND current_user = 'ibex_gdpr' THEN
        RETURN OLD;
    END IF;
    RAISE EXCEPTION 'audit events are append-only' USING ERRCODE = 'insufficient_privilege';
END
$$;
CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON ibex_core.audit_events
    FOR EACH ROW EXECUTE FUNCTION ibex_core.audit_events_append_only();

ALTER TABLE ibex_core.audit_events ENABLE ROW LEVEL SECURITY;
ALTER TABLE ibex_core.audit_events FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_events_tenant ON ibex_core.audit_events
    USING (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid)
    WITH CHECK (org_id = NULLIF(current_setting('app.current_org_id', true), '')::uuid);

GRANT SELECT, INSERT ON ibex_core.audit_events TO ibex_app;
GRANT SELECT, DELETE ON ibex_core.audit_events TO ibex_gdpr;
