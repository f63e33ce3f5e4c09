-- Sync machinery: server metadata, users, devices, the table registry, the change
-- log filled by one generic trigger, row history, the push log and the horizon clock.

CREATE TABLE server_meta (
    key   text PRIMARY KEY,
    value text NOT NULL
);
-- The epoch is carried inside every cursor; a new epoch invalidates every cursor
-- (RESYNC_REQUIRED), e.g. after the database was restored from a backup.
INSERT INTO server_meta (key, value) VALUES ('epoch', gen_random_uuid()::text);

CREATE TABLE users (
    id            uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id     text NOT NULL,
    username      text NOT NULL UNIQUE,
    role          text NOT NULL CHECK (role IN ('manager', 'store')),
    store_id      text,
    password_hash text NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now(),
    CHECK (role <> 'store' OR store_id IS NOT NULL)
);

CREATE TABLE devices (
    tenant_id    text NOT NULL,
    device_id    text NOT NULL,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    device_name  text,
    created_at   timestamptz NOT NULL DEFAULT now(),
    last_seen_at timestamptz,
    last_pull_at timestamptz,
    last_push_at timestamptz,
    cursor       text,
    sync_count   bigint NOT NULL DEFAULT 0,
    revoked_at   timestamptz,
    PRIMARY KEY (tenant_id, device_id)
);

CREATE TABLE refresh_tokens (
    token_hash  bytea PRIMARY KEY,
    tenant_id   text NOT NULL,
    device_id   text NOT NULL,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL,
    used_at     timestamptz,
    FOREIGN KEY (tenant_id, device_id) REFERENCES devices(tenant_id, device_id) ON DELETE CASCADE
);
CREATE INDEX refresh_tokens_device ON refresh_tokens (tenant_id, device_id);

-- Which tables sync, under which conflict rule, for which roles.
CREATE TABLE sync_tables (
    table_name   text PRIMARY KEY,
    rule         text NOT NULL CHECK (rule IN
                   ('server_wins', 'client_wins', 'latest_wins', 'manager_wins', 'merge', 'manual')),
    read_roles   text[] NOT NULL,
    write_roles  text[] NOT NULL,
    -- column holding the store id for store-scoped tables; store devices see only their own
    scope_column text,
    urgent       boolean NOT NULL DEFAULT false
);

-- One entry per synced row, at its latest change: (xid, seq) orders the pull.
-- xid is the writing transaction's id; a pull only reads entries below the
-- horizon pg_snapshot_xmin(pg_current_snapshot()), where every writer has finished.
CREATE SEQUENCE sync_changes_seq;
CREATE TABLE sync_changes (
    table_name    text NOT NULL,
    row_id        uuid NOT NULL,
    tenant_id     text NOT NULL,
    store_id      text,
    xid           xid8 NOT NULL,
    seq           bigint NOT NULL,
    version       bigint NOT NULL,
    updated_at    timestamptz NOT NULL,
    deleted       boolean NOT NULL,
    purged        boolean NOT NULL DEFAULT false,
    origin_device text,
    origin_role   text,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    PRIMARY KEY (table_name, row_id)
);
CREATE INDEX sync_changes_pull ON sync_changes (tenant_id, xid, seq);

-- Every version of every synced row, for the audit trail and three-way merges.
CREATE TABLE sync_row_history (
    id            bigserial PRIMARY KEY,
    table_name    text NOT NULL,
    row_id        uuid NOT NULL,
    tenant_id     text NOT NULL,
    version       bigint NOT NULL,
    op            text NOT NULL,
    data          jsonb NOT NULL,
    xid           xid8 NOT NULL,
    origin_device text,
    origin_role   text,
    changed_at    timestamptz NOT NULL DEFAULT clock_timestamp()
);
CREATE INDEX sync_row_history_row ON sync_row_history (table_name, row_id, version);

-- Idempotent pushes: one answer per (device, push_id), written in the push's transaction.
CREATE TABLE push_log (
    tenant_id    text NOT NULL,
    device_id    text NOT NULL,
    push_id      text NOT NULL,
    request_hash bytea NOT NULL,
    response     jsonb,
    created_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (tenant_id, device_id, push_id)
);
CREATE INDEX push_log_created ON push_log (created_at);

-- Wall clock to horizon map, ticked by the server, for legacy last_sync_timestamp pulls.
CREATE TABLE sync_horizons (
    at      timestamptz PRIMARY KEY,
    horizon xid8 NOT NULL
);

-- BEFORE trigger: the server owns `version`; `updated_at` defaults to now() for
-- writers (admin SQL) that do not set it; tenant and store (TG_ARGV[0]) never change.
CREATE FUNCTION sync_stamp() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_OP = 'INSERT' THEN
        NEW.version := 1;
        IF NEW.updated_at IS NULL THEN NEW.updated_at := now(); END IF;
    ELSE
        NEW.version := OLD.version + 1;
        IF NEW.updated_at IS NOT DISTINCT FROM OLD.updated_at THEN
            NEW.updated_at := now();
        END IF;
        IF NEW.tenant_id IS DISTINCT FROM OLD.tenant_id THEN
            RAISE EXCEPTION 'tenant_id of a synced row cannot change';
        END IF;
        -- Devices of the old store would keep a stale copy: moving rows is refused.
        IF TG_NARGS > 0 AND (to_jsonb(NEW) ->> TG_ARGV[0]) IS DISTINCT FROM (to_jsonb(OLD) ->> TG_ARGV[0]) THEN
            RAISE EXCEPTION '% of a synced row cannot change; delete the row and create a new one', TG_ARGV[0];
        END IF;
    END IF;
    RETURN NEW;
END $$;

-- AFTER trigger: records every write of every writer in the change log and history.
-- TG_ARGV[0], when given, names the store scope column.
CREATE FUNCTION sync_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc     jsonb;
    scope   text;
    device  text := nullif(current_setting('nas_sync.device', true), '');
    role    text := nullif(current_setting('nas_sync.role', true), '');
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
    RETURN NULL;
END $$;

-- Makes a table synced: registry entry plus both triggers. Adding a synced table is
-- one migration calling this.
CREATE FUNCTION sync_register(tbl text, rule text, read_roles text[], write_roles text[],
                              scope_column text DEFAULT NULL, urgent boolean DEFAULT false)
RETURNS void LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sync_tables (table_name, rule, read_roles, write_roles, scope_column, urgent)
    VALUES (tbl, rule, read_roles, write_roles, scope_column, urgent);
    IF scope_column IS NULL THEN
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION sync_stamp()', tbl || '_sync_stamp', tbl);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION sync_track()', tbl || '_sync_track', tbl);
    ELSE
        EXECUTE format('CREATE TRIGGER %I BEFORE INSERT OR UPDATE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION sync_stamp(%L)', tbl || '_sync_stamp', tbl, scope_column);
        EXECUTE format('CREATE TRIGGER %I AFTER INSERT OR UPDATE OR DELETE ON %I '
                       'FOR EACH ROW EXECUTE FUNCTION sync_track(%L)',
                       tbl || '_sync_track', tbl, scope_column);
    END IF;
END $$;
