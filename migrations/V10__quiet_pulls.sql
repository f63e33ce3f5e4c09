-- Empty pulls answered from memory (issue 13, src/sync/quiet.rs). Each server process
-- keeps, per tenant, the newest transaction that wrote to the change log, fed by the
-- notifications below (delivered after commit, to every server process), so a pull
-- whose cursor is past it can answer "nothing new" without a page statement.

-- The change trigger of V6 with one addition: the note names the writing transaction
-- (`x`). One transaction's notes to one tenant, table and store stay identical, so
-- PostgreSQL still delivers them once.
CREATE OR REPLACE FUNCTION sync_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc     jsonb;
    scope   text;
    device  text := nullif(current_setting('nas_sync.device', true), '');
    role    text := nullif(current_setting('nas_sync.role', true), '');
    note    jsonb;
BEGIN
    IF TG_OP = 'DELETE' THEN doc := to_jsonb(OLD); ELSE doc := to_jsonb(NEW); END IF;
    IF TG_NARGS > 0 THEN scope := doc ->> TG_ARGV[0]; END IF;
    INSERT INTO sync_changes AS c (table_name, row_id, tenant_id, store_id, xid, seq, version,
                                   updated_at, deleted, purged, origin_device, origin_role,
                                   doc_bytes)
    VALUES (TG_TABLE_NAME, (doc ->> 'id')::uuid, doc ->> 'tenant_id', scope,
            pg_current_xact_id(), nextval('sync_changes_seq'), (doc ->> 'version')::bigint,
            (doc ->> 'updated_at')::timestamptz,
            TG_OP = 'DELETE' OR coalesce((doc ->> 'deleted')::boolean, false),
            TG_OP = 'DELETE', device, role, pg_column_size(doc))
    ON CONFLICT (table_name, row_id) DO UPDATE SET
        tenant_id = EXCLUDED.tenant_id, store_id = EXCLUDED.store_id, xid = EXCLUDED.xid,
        seq = EXCLUDED.seq, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
        deleted = EXCLUDED.deleted, purged = EXCLUDED.purged,
        origin_device = EXCLUDED.origin_device, origin_role = EXCLUDED.origin_role,
        changed_at = clock_timestamp(), event_id = NULL, doc_bytes = EXCLUDED.doc_bytes;
    INSERT INTO sync_row_history (table_name, row_id, tenant_id, version, op, data, xid,
                                  origin_device, origin_role)
    VALUES (TG_TABLE_NAME, (doc ->> 'id')::uuid, doc ->> 'tenant_id',
            (doc ->> 'version')::bigint, lower(TG_OP), doc, pg_current_xact_id(), device, role);
    note := jsonb_build_object('t', doc ->> 'tenant_id', 'tb', TG_TABLE_NAME, 's', scope, 'o', device,
                               'x', pg_current_xact_id()::text::bigint);
    IF TG_OP <> 'DELETE'
       AND (doc ->> 'priority' = 'high'
            OR EXISTS (SELECT 1 FROM sync_tables WHERE table_name = TG_TABLE_NAME AND urgent)) THEN
        note := note || jsonb_build_object('id', doc ->> 'id');
    END IF;
    PERFORM pg_notify('nas_sync', note::text);
    RETURN NULL;
END $$;

-- Changes a memory answer depends on besides the log: a device's open conflicts (the
-- answer says whether it has any), and the server's epoch, table registry, roles and
-- retention floor (a cursor may have to answer RESYNC_REQUIRED).
CREATE FUNCTION sync_state_notify() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    rec record;
BEGIN
    IF TG_OP = 'DELETE' THEN rec := OLD; ELSE rec := NEW; END IF;
    IF TG_TABLE_NAME = 'sync_conflicts' THEN
        PERFORM pg_notify('nas_sync_state',
            json_build_object('t', rec.tenant_id, 'd', rec.device_id)::text);
    ELSIF rec.key IN ('epoch', 'registry_version', 'roles_version', 'retained_from') THEN
        PERFORM pg_notify('nas_sync_state', json_build_object('meta', rec.key)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER sync_conflicts_state AFTER INSERT OR UPDATE OR DELETE ON sync_conflicts
    FOR EACH ROW EXECUTE FUNCTION sync_state_notify();
CREATE TRIGGER server_meta_state AFTER INSERT OR UPDATE OR DELETE ON server_meta
    FOR EACH ROW EXECUTE FUNCTION sync_state_notify();
