-- Every outbox event names the request that caused it (docs: issue 27, accountability). The
-- transaction's `app.request_id` setting is set at BEGIN from the request being served, so the
-- default fills it whichever statement inserts the row (the bulk memory deletion included);
-- background jobs leave it NULL.
ALTER TABLE ibex_core.outbox
    ADD COLUMN request_id uuid DEFAULT NULLIF(current_setting('app.request_id', true), '')::uuid;
