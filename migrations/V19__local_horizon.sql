-- The horizon only this database's writers hold back (issue 27).
--
-- A pull reads the change log below a horizon: every transaction that could still add
-- an entry under it must have finished. `pg_snapshot_xmin` is cluster-wide, so a long
-- writing transaction in any other database of the same PostgreSQL held every pull
-- back. `sync_horizon()` is the lowest transaction still running in the calling
-- statement's snapshot that is not known to belong to another database (or the
-- snapshot's xmax when there is none).
--
-- Why it is safe: a transaction id below the result is either finished in the
-- snapshot, or running in a backend of another database, which cannot write this
-- database's tables. A running id is set aside only when a backend connected to
-- another database is seen running it (`pg_stat_get_activity`, which any role may read
-- for this). The status is read after the snapshot and may be older (PostgreSQL keeps
-- one copy per transaction), but a pair (id, database) never stops being true: an id
-- that ended or is not listed counts as this database's, which only holds the horizon
-- lower. Ids at or above the snapshot's xmax are not in its list and stay above the
-- result. Ids of running transactions are within 2^31 of each other, so comparing the
-- status's 32-bit ids with the snapshot's 64-bit ones modulo 2^32 cannot mix two up.
--
-- `unsure` says the result is a running id that no backend was seen running when the
-- status was read: it ended in the instant between the snapshot and that read (or is
-- a prepared transaction). Holding the horizon there is right for this snapshot, but
-- a pull may take a new one at once instead of waiting for its next turn.
--
-- STABLE: it runs in its caller's snapshot (a VOLATILE function would take its own).
-- With no running id below the snapshot's xmax, the status is not read at all.
CREATE FUNCTION sync_horizon_state(OUT horizon xid8, OUT unsure boolean)
LANGUAGE sql STABLE AS $$
    SELECT coalesce(o.x, pg_snapshot_xmax(s.s)), coalesce(o.unlisted, false)
    FROM (SELECT pg_current_snapshot() AS s) s
    LEFT JOIN LATERAL (
        SELECT x, NOT EXISTS (SELECT 1 FROM pg_stat_get_activity(NULL) a
                              WHERE a.backend_xid::text::bigint = x::text::bigint % 4294967296)
                  AS unlisted
        FROM pg_snapshot_xip(s.s) x
        WHERE (x::text::bigint % 4294967296) NOT IN (
            SELECT a.backend_xid::text::bigint
            FROM pg_stat_get_activity(NULL) a
            WHERE a.backend_xid IS NOT NULL AND a.datid IS NOT NULL
              AND a.datid <> (SELECT oid FROM pg_database WHERE datname = current_database()))
        ORDER BY x LIMIT 1) o ON true
$$;

CREATE FUNCTION sync_horizon() RETURNS xid8 LANGUAGE sql STABLE AS $$
    SELECT horizon FROM sync_horizon_state()
$$;

-- Event numbering (V6, plans from V13) numbers what is below the same horizon.
CREATE OR REPLACE FUNCTION sync_number_events(tenant text) RETURNS bigint LANGUAGE plpgsql
SET plan_cache_mode = force_custom_plan AS $$
DECLARE
    last    bigint;
    horizon xid8;
BEGIN
    INSERT INTO sync_event_counters (tenant_id) VALUES (tenant) ON CONFLICT DO NOTHING;
    SELECT last_event_id INTO last FROM sync_event_counters
        WHERE tenant_id = tenant FOR UPDATE;
    -- Taken after the lock: every transaction of this database below it has finished.
    horizon := sync_horizon();
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
