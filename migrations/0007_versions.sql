-- A version per changeable resource, the source of its strong ETag: bumped by the database on
-- every UPDATE of the row, whoever makes it (an API write, a counter the platform moves), so the
-- ETag changes with every change of the representation and `If-Match` can be checked in the
-- write's own WHERE clause (no read-then-write race).
CREATE FUNCTION ibex_core.bump_version() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    NEW.version := OLD.version + 1;
    RETURN NEW;
END;
$$;

ALTER TABLE ibex_core.organizations ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE ibex_core.users ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE ibex_core.agents ADD COLUMN version bigint NOT NULL DEFAULT 1;
ALTER TABLE ibex_core.directives ADD COLUMN version bigint NOT NULL DEFAULT 1;

CREATE TRIGGER organizations_version BEFORE UPDATE ON ibex_core.organizations
    FOR EACH ROW EXECUTE FUNCTION ibex_core.bump_version();
CREATE TRIGGER users_version BEFORE UPDATE ON ibex_core.users
    FOR EACH ROW EXECUTE FUNCTION ibex_core.bump_version();
CREATE TRIGGER agents_version BEFORE UPDATE ON ibex_core.agents
    FOR EACH ROW EXECUTE FUNCTION ibex_core.bump_version();
CREATE TRIGGER directives_version BEFORE UPDATE ON ibex_core.directives
    FOR EACH ROW EXECUTE FUNCTION ibex_core.bump_version();
