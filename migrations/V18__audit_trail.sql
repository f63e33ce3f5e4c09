-- The audit trail (issue 26, docs/audit.md): who changed what, when and from where,
-- chained per tenant so that an edit, deletion or insertion is evident.
--
-- Recording stays in the change trigger: `sync_row_history` already holds every
-- version of every synced row from every writer (pushes, the inbox, the Odoo mirror,
-- plain SQL); it now also says who (`origin_user`) and by which path (`origin`). The
-- server's own writers name them with `nas_sync.user` and `nas_sync.origin`; a write
-- without them is a device's push when `nas_sync.device` is set, else `sql`.
--
-- `audit_log` is written in the background (src/audit/seal.rs) from the history, once
-- every transaction that could still add an older entry has ended: one entry per
-- version, with the fields that changed (old and new), sealed with an HMAC over the
-- previous entry's seal and the entry, under a key derived from the server's secret.
-- Anyone can read it; nobody without the secret can rewrite it unseen
-- (`nas-sync audit verify`).

ALTER TABLE sync_row_history ADD COLUMN origin_user text, ADD COLUMN origin text;

CREATE OR REPLACE FUNCTION sync_track() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    doc     jsonb;
    scope   text;
    device  text := nullif(current_setting('nas_sync.device', true), '');
    role    text := nullif(current_setting('nas_sync.role', true), '');
    who     text := nullif(current_setting('nas_sync.user', true), '');
    origin  text := coalesce(nullif(current_setting('nas_sync.origin', true), ''),
                             CASE WHEN device IS NULL THEN 'sql' ELSE 'push' END);
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
                                  origin_device, origin_role, origin_user, origin)
    VALUES (TG_TABLE_NAME, (doc ->> 'id')::uuid, doc ->> 'tenant_id',
            (doc ->> 'version')::bigint, lower(TG_OP), doc, pg_current_xact_id(), device, role,
            who, origin);
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

CREATE TABLE audit_log (
    tenant_id   text NOT NULL,
    seq         bigint NOT NULL,           -- the entry's place in its tenant's chain, from 1
    history_id  bigint NOT NULL,           -- the sync_row_history entry it was made from
    table_name  text NOT NULL,
    row_id      uuid NOT NULL,
    version     bigint,
    store_id    text,                      -- the row's store, for tables scoped by store
    op          text NOT NULL,             -- insert, update, delete
    changed     jsonb NOT NULL,            -- {"column": [old, new]} for each column that changed
    server_time timestamptz NOT NULL,
    device_time timestamptz,               -- the row's updated_at as written
    user_name   text,
    device_id   text,
    role        text,
    origin      text NOT NULL,             -- push, bridgecore, inbox, console, odoo_mirror, odoo_write_back, cli, sql
    prev_seal   bytea NOT NULL,
    seal        bytea NOT NULL,
    PRIMARY KEY (tenant_id, seq)
);
CREATE INDEX audit_log_row ON audit_log (tenant_id, table_name, row_id, seq);
CREATE INDEX audit_log_time ON audit_log (tenant_id, server_time);
CREATE INDEX audit_log_store ON audit_log (tenant_id, store_id, seq);

-- Where each tenant's chain starts after retention pruned its head: the first kept
-- entry's place and the seal it follows, signed by the server.
CREATE TABLE audit_checkpoints (
    tenant_id  text PRIMARY KEY,
    seq        bigint NOT NULL,
    prev_seal  bytea NOT NULL,
    pruned_at  timestamptz NOT NULL,
    signature  bytea NOT NULL
);

-- The last `audit verify` per tenant, for the console's overview.
CREATE TABLE audit_verifications (
    tenant_id    text PRIMARY KEY,
    verified_at  timestamptz NOT NULL,
    held         boolean NOT NULL,
    entries      bigint NOT NULL,
    first_bad    bigint,
    problem      text
);
