-- BridgeCore compatibility and the conflict inbox (docs/contract.md §8,
-- docs/architecture.md "Event ids").

-- Integer event ids. A change-log entry gets its number once its writer has finished
-- (its xid is below the horizon), in (xid, seq) order, under the tenant's counter row
-- lock held until commit: numbers become visible in increasing order, and a late
-- commit is numbered after everything already numbered, never before.
ALTER TABLE sync_changes ADD COLUMN event_id bigint;
-- The size of the row's latest version, so a pull page can stop at
-- NAS_SYNC_MAX_PAGE_BYTES before PostgreSQL renders the rows.
ALTER TABLE sync_changes ADD COLUMN doc_bytes integer;
CREATE UNIQUE INDEX sync_changes_events ON sync_changes (tenant_id, event_id)
    WHERE event_id IS NOT NULL;
CREATE INDEX sync_changes_unnumbered ON sync_changes (tenant_id, xid, seq)
    WHERE event_id IS NULL;

-- The change trigger of V4, with two additions: a new change of a row is a new event,
-- so its entry loses its old number (`event_id = NULL`), and the entry keeps the size
-- of the row (`doc_bytes`).
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
    note := jsonb_build_object('t', doc ->> 'tenant_id', 'tb', TG_TABLE_NAME, 's', scope, 'o', device);
    IF TG_OP <> 'DELETE'
       AND (doc ->> 'priority' = 'high'
            OR EXISTS (SELECT 1 FROM sync_tables WHERE table_name = TG_TABLE_NAME AND urgent)) THEN
        note := note || jsonb_build_object('id', doc ->> 'id');
    END IF;
    PERFORM pg_notify('nas_sync', note::text);
    RETURN NULL;
END $$;

-- Per tenant: the last event id given, and the newest event id whose tombstone was
-- pruned by retention (a position below it may have missed a deletion).
CREATE TABLE sync_event_counters (
    tenant_id      text PRIMARY KEY,
    last_event_id  bigint NOT NULL DEFAULT 0,
    retained_from  bigint NOT NULL DEFAULT 0
);

-- Numbers every finished, unnumbered change of `tenant`; returns the last event id.
CREATE FUNCTION sync_number_events(tenant text) RETURNS bigint LANGUAGE plpgsql AS $$
DECLARE
    last    bigint;
    horizon xid8;
BEGIN
    INSERT INTO sync_event_counters (tenant_id) VALUES (tenant) ON CONFLICT DO NOTHING;
    SELECT last_event_id INTO last FROM sync_event_counters
        WHERE tenant_id = tenant FOR UPDATE;
    -- Taken after the lock: every transaction below it has finished.
    horizon := pg_snapshot_xmin(pg_current_snapshot());
    -- An entry a running transaction is rewriting is skipped, not waited for: that
    -- transaction's change will be numbered once it has finished (or, if it rolls
    -- back, this entry at a later numbering). Pulls never wait on writers.
    WITH locked AS (
        SELECT table_name, row_id, xid, seq
        FROM sync_changes
        WHERE tenant_id = tenant AND event_id IS NULL AND xid < horizon
        FOR UPDATE SKIP LOCKED
    ), todo AS (
        SELECT table_name, row_id, row_number() OVER (ORDER BY xid, seq) AS n FROM locked
    ), done AS (
        UPDATE sync_changes c SET event_id = last + todo.n
        FROM todo
        WHERE c.table_name = todo.table_name AND c.row_id = todo.row_id
          AND c.event_id IS NULL AND c.xid < horizon
        RETURNING c.event_id
    )
    SELECT greatest(last, coalesce(max(event_id), last)) INTO last FROM done;
    UPDATE sync_event_counters SET last_event_id = last WHERE tenant_id = tenant;
    RETURN last;
END $$;

-- Open and resolved conflicts of the `manual` and `merge` rules and strategies: both
-- sides and the version the device based its change on.
CREATE TABLE sync_conflicts (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text NOT NULL,
    table_name    text NOT NULL,
    row_id        uuid NOT NULL,
    store_id      text,
    device_id     text NOT NULL,
    user_id       uuid NOT NULL,
    local_id      text,
    base_version  bigint NOT NULL,
    base_data     jsonb,
    server_data   jsonb NOT NULL,
    client_data   jsonb NOT NULL,
    strategy      text NOT NULL,
    status        text NOT NULL DEFAULT 'open' CHECK (status IN ('open', 'resolved')),
    resolution    text,
    resolved_data jsonb,
    resolved_by   text,
    resolved_at   timestamptz,
    created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sync_conflicts_open ON sync_conflicts (tenant_id, device_id, created_at)
    WHERE status = 'open';

-- BridgeCore local ids: the row a device's `local_id` created, so a retried create
-- maps to the same row and creates nothing.
CREATE TABLE offline_local_ids (
    tenant_id  text NOT NULL,
    device_id  text NOT NULL,
    local_id   text NOT NULL,
    table_name text NOT NULL,
    row_id     uuid NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, local_id)
);

-- BridgeCore positions, per user, device and app type.
CREATE TABLE offline_sync_state (
    tenant_id           text NOT NULL,
    user_id             uuid NOT NULL,
    device_id           text NOT NULL,
    app_type            text NOT NULL,
    last_event_id       bigint NOT NULL DEFAULT 0,
    last_sync_time      timestamptz,
    total_syncs         bigint NOT NULL DEFAULT 0,
    total_events_synced bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, user_id, device_id, app_type)
);
