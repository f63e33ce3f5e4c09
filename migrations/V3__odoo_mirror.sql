-- Odoo mirror: connections, per-model extraction state, batches that survive crashes,
-- and the write-back outbox. The mirror tables themselves (odoo_res_partner, ...) are
-- created by the server from the chosen models' fields (src/odoo/schema.rs) and
-- registered with sync_register() like any synced table.

CREATE TABLE odoo_connections (
    id                    uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id             text NOT NULL,
    url                   text NOT NULL,
    database              text NOT NULL,
    username              text NOT NULL,
    -- Never returned by any route.
    api_key               text NOT NULL,
    protocol              text NOT NULL CHECK (protocol IN ('jsonrpc', 'json2')),
    server_version        text NOT NULL,
    uid                   bigint,
    models                text[] NOT NULL,
    initial_range_days    integer NOT NULL CHECK (initial_range_days >= 0),
    batch_size            integer NOT NULL CHECK (batch_size BETWEEN 1 AND 5000),
    safety_lag_seconds    integer NOT NULL CHECK (safety_lag_seconds >= 0),
    poll_interval_seconds integer NOT NULL CHECK (poll_interval_seconds >= 1),
    -- not_started until the first plan, in_progress until every first-mirror batch
    -- has finished, then done (or failed when some batch failed for good).
    sync_status           text NOT NULL DEFAULT 'not_started'
                          CHECK (sync_status IN ('not_started', 'in_progress', 'done', 'failed')),
    first_mirror_done_at  timestamptz,
    last_poll_at          timestamptz,
    last_error            text,
    -- A worker (one per connection across every server process) holds a lease.
    lease_owner           text,
    lease_until           timestamptz,
    created_by            text,
    created_at            timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX odoo_connections_tenant ON odoo_connections (tenant_id);

-- One row per (connection, model): the table it fills, the fields read, and how far
-- the write_date windows have been planned (Odoo's clock, UTC, whole seconds).
CREATE TABLE odoo_model_state (
    connection_id    uuid NOT NULL REFERENCES odoo_connections(id) ON DELETE CASCADE,
    model            text NOT NULL,
    table_name       text NOT NULL,
    fields           jsonb NOT NULL,
    -- lower bound of the first mirror (initial_range_days before it started)
    range_start      timestamp,
    planned_until    timestamp,
    -- a char field x_nas_sync_uuid on the model, when Odoo has one: creates are
    -- tagged with the row's uuid and found again by it
    tag_field        text,
    last_write_date  timestamp,
    last_reconciled_at timestamptz,
    PRIMARY KEY (connection_id, model)
);

-- A batch is one half-open write_date window [window_start, window_end) of one model.
-- Its records and its status commit in one transaction.
CREATE TABLE odoo_batches (
    id             bigserial PRIMARY KEY,
    connection_id  uuid NOT NULL REFERENCES odoo_connections(id) ON DELETE CASCADE,
    model          text NOT NULL,
    window_start   timestamp NOT NULL,
    window_end     timestamp NOT NULL,
    expected       bigint NOT NULL,
    initial        boolean NOT NULL,
    status         text NOT NULL DEFAULT 'pending'
                   CHECK (status IN ('pending', 'running', 'done', 'failed', 'permanently_failed')),
    attempts       integer NOT NULL DEFAULT 0,
    last_error     text,
    records        bigint,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    created_at     timestamptz NOT NULL DEFAULT now(),
    finished_at    timestamptz,
    CHECK (window_start < window_end)
);
CREATE INDEX odoo_batches_next ON odoo_batches (connection_id, status, next_attempt_at, id);

-- Device writes to mirror tables, waiting to be sent to Odoo (one entry per row).
CREATE TABLE odoo_outbox (
    table_name      text NOT NULL,
    row_id          uuid NOT NULL,
    connection_id   uuid NOT NULL REFERENCES odoo_connections(id) ON DELETE CASCADE,
    model           text NOT NULL,
    status          text NOT NULL DEFAULT 'pending'
                    CHECK (status IN ('pending', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    last_error      text,
    -- Set (in Odoo's clock) before a create is sent: a retry after a lost answer
    -- looks for the record instead of creating it twice.
    create_sent_at  timestamp,
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    queued_at       timestamptz NOT NULL DEFAULT now(),
    done_at         timestamptz,
    PRIMARY KEY (table_name, row_id)
);
CREATE INDEX odoo_outbox_next ON odoo_outbox (connection_id, status, next_attempt_at);

-- BEFORE trigger on mirror tables: for writes by devices (the push sets
-- nas_sync.device), only the writable fields (TG_ARGV[1], comma-separated, companion
-- uuid columns included) take the device's values; every other column keeps its
-- value (NULL for a new row), so a device can neither forge Odoo's data nor the
-- server's bookkeeping. The row joins the tenant's connection for that model when it
-- names none, deletes are refused, and the row is marked pending until the outbox
-- worker has written it to Odoo. TG_ARGV[0] is the model.
CREATE FUNCTION odoo_guard() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
    device text := nullif(current_setting('nas_sync.device', true), '');
    keep   text[] := ARRAY['id', 'tenant_id', 'version', 'updated_at', 'deleted', 'odoo_connection_id']
                     || string_to_array(coalesce(TG_ARGV[1], ''), ',');
    conn   uuid;
    n      integer;
BEGIN
    IF device IS NULL THEN
        RETURN NEW;
    END IF;
    IF TG_OP = 'INSERT' THEN
        IF NEW.deleted THEN
            RAISE EXCEPTION 'rows of Odoo mirror tables cannot be created deleted';
        END IF;
        NEW := jsonb_populate_record(NEW, (
            SELECT coalesce(jsonb_object_agg(k, NULL), '{}'::jsonb)
            FROM jsonb_object_keys(to_jsonb(NEW)) AS k WHERE k <> ALL (keep)));
        IF NEW.odoo_connection_id IS NULL THEN
            SELECT count(*), min(c.id::text)::uuid INTO n, conn
            FROM odoo_connections c JOIN odoo_model_state s ON s.connection_id = c.id
            WHERE c.tenant_id = NEW.tenant_id AND s.table_name = TG_TABLE_NAME;
            IF n = 0 THEN
                RAISE EXCEPTION 'no Odoo connection of this tenant mirrors %', TG_ARGV[0];
            ELSIF n > 1 THEN
                RAISE EXCEPTION 'several Odoo connections mirror %; set odoo_connection_id', TG_ARGV[0];
            END IF;
            NEW.odoo_connection_id := conn;
        ELSIF NOT EXISTS (SELECT 1 FROM odoo_connections c JOIN odoo_model_state s ON s.connection_id = c.id
                          WHERE c.id = NEW.odoo_connection_id AND c.tenant_id = NEW.tenant_id
                            AND s.table_name = TG_TABLE_NAME) THEN
            RAISE EXCEPTION 'odoo_connection_id names no connection of this tenant mirroring %', TG_ARGV[0];
        END IF;
    ELSE
        IF NEW.deleted AND NOT OLD.deleted THEN
            RAISE EXCEPTION 'rows of Odoo mirror tables cannot be deleted from a device; archive or cancel them in Odoo';
        END IF;
        NEW := jsonb_populate_record(NEW, to_jsonb(OLD) - keep);
        NEW.odoo_connection_id := OLD.odoo_connection_id;
    END IF;
    NEW.odoo_sync_status := 'pending';
    NEW.odoo_sync_error := NULL;
    RETURN NEW;
END $$;

-- AFTER trigger on mirror tables: a device write queues the row for Odoo.
CREATE FUNCTION odoo_enqueue() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF nullif(current_setting('nas_sync.device', true), '') IS NULL THEN
        RETURN NULL;
    END IF;
    INSERT INTO odoo_outbox (table_name, row_id, connection_id, model)
    VALUES (TG_TABLE_NAME, NEW.id, NEW.odoo_connection_id, TG_ARGV[0])
    ON CONFLICT (table_name, row_id) DO UPDATE SET
        status = 'pending', attempts = 0, last_error = NULL, next_attempt_at = now(),
        queued_at = now(), done_at = NULL,
        -- a create already sent keeps its mark, so its retry still looks first
        create_sent_at = odoo_outbox.create_sent_at;
    RETURN NULL;
END $$;
