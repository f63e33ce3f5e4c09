-- Real time: every committed change of a synced row notifies the servers' listeners
-- on channel `nas_sync`. The payload names tenant, table and store (and the origin
-- device); PostgreSQL delivers identical payloads of one transaction once, so a
-- 10,000-row push is one notification per table and store. Rows of urgent tables, or
-- rows whose `priority` is 'high', also name their id so they can be sent whole.
-- Notifications are delivered after commit, to every server process.
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
                                   updated_at, deleted, purged, origin_device, origin_role)
    VALUES (TG_TABLE_NAME, (doc ->> 'id')::uuid, doc ->> 'tenant_id', scope,
            pg_current_xact_id(), nextval('sync_changes_seq'), (doc ->> 'version')::bigint,
            (doc ->> 'updated_at')::timestamptz,
            TG_OP = 'DELETE' OR coalesce((doc ->> 'deleted')::boolean, false),
            TG_OP = 'DELETE', device, role)
    ON CONFLICT (table_name, row_id) DO UPDATE SET
        tenant_id = EXCLUDED.tenant_id, store_id = EXCLUDED.store_id, xid = EXCLUDED.xid,
        seq = EXCLUDED.seq, version = EXCLUDED.version, updated_at = EXCLUDED.updated_at,
        deleted = EXCLUDED.deleted, purged = EXCLUDED.purged,
        origin_device = EXCLUDED.origin_device, origin_role = EXCLUDED.origin_role,
        changed_at = clock_timestamp();
    INSERT INTO sync_row_history (table_name, row_id, tenant_id, version, op, data, xid,
                                  origin_device, origin_role)
    VALUES (TG_TABLE_NAME, (doc ->> 'id')::uuid, doc ->> 'tenant_id',
            (doc ->> 'version')::bigint, lower(TG_OP), doc, pg_current_xact_id(), device, role);
    note := jsonb_build_object('t', doc ->> 'tenant_id', 'tb', TG_TABLE_NAME, 's', scope, 'o', device);
    IF TG_OP <> 'DELETE'
       AND (doc ->> 'priority' = 'high'
            OR EXISTS (SELECT 1 FROM sync_tables WHERE table_name = TG_TABLE_NAME AND urgent)) THEN
        note := note || jsonb_build_object('id', doc ->> 'id');
    END IF;
    PERFORM pg_notify('nas_sync', note::text);
    RETURN NULL;
END $$;
