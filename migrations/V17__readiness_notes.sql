-- Empty pulls that name tables are answered from memory too (sync/quiet.rs), which
-- then remembers that a tenant's mirror tables are ready. What decides readiness
-- (a tenant's Odoo connections, whether their first mirror is done, and the tables
-- they mirror) notifies `nas_sync_state` when it changes, without a tenant: every
-- server process forgets its memory and asks the database again. Updates that leave
-- those columns as they were (the mirror sets `first_mirror_done_at` to itself at
-- each pass) notify nothing.
CREATE FUNCTION sync_readiness_notify() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('nas_sync_state', json_build_object('meta', 'readiness')::text);
    RETURN NULL;
END $$;

CREATE TRIGGER odoo_connections_readiness
    AFTER INSERT OR DELETE ON odoo_connections
    FOR EACH STATEMENT EXECUTE FUNCTION sync_readiness_notify();
CREATE TRIGGER odoo_connections_readiness_update
    AFTER UPDATE OF tenant_id, first_mirror_done_at ON odoo_connections
    FOR EACH ROW
    WHEN (OLD.tenant_id IS DISTINCT FROM NEW.tenant_id
          OR OLD.first_mirror_done_at IS DISTINCT FROM NEW.first_mirror_done_at)
    EXECUTE FUNCTION sync_readiness_notify();
CREATE TRIGGER odoo_model_state_readiness
    AFTER INSERT OR DELETE ON odoo_model_state
    FOR EACH STATEMENT EXECUTE FUNCTION sync_readiness_notify();
CREATE TRIGGER odoo_model_state_readiness_update
    AFTER UPDATE OF connection_id, table_name ON odoo_model_state
    FOR EACH ROW
    WHEN (OLD.connection_id IS DISTINCT FROM NEW.connection_id
          OR OLD.table_name IS DISTINCT FROM NEW.table_name)
    EXECUTE FUNCTION sync_readiness_notify();
