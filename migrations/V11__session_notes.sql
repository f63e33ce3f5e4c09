-- Sessions remembered in memory (issue 13, src/auth/remembered.rs). A server process
-- may remember that a device's token passed the session check, to answer that device's
-- empty pulls without a round trip. Every change that could end such a session sends a
-- note on `nas_sync_session`, whoever makes it (the server, the CLI, raw SQL), so each
-- process forgets the session when the change commits.

CREATE OR REPLACE FUNCTION nas_sync_session_note() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF TG_LEVEL = 'STATEMENT' THEN
        PERFORM pg_notify('nas_sync_session', '{}');
    ELSIF TG_TABLE_NAME = 'devices' THEN
        PERFORM pg_notify('nas_sync_session',
                          json_build_object('t', OLD.tenant_id, 'd', OLD.device_id)::text);
    ELSE
        PERFORM pg_notify('nas_sync_session', json_build_object('u', OLD.id)::text);
    END IF;
    RETURN NULL;
END $$;

CREATE TRIGGER devices_session_note
    AFTER UPDATE OF tenant_id, device_id, user_id, token_generation, revoked_at OR DELETE
    ON devices FOR EACH ROW EXECUTE FUNCTION nas_sync_session_note();
CREATE TRIGGER devices_session_truncate
    AFTER TRUNCATE ON devices FOR EACH STATEMENT EXECUTE FUNCTION nas_sync_session_note();
CREATE TRIGGER users_session_note
    AFTER UPDATE OF disabled_at OR DELETE
    ON users FOR EACH ROW EXECUTE FUNCTION nas_sync_session_note();
CREATE TRIGGER users_session_truncate
    AFTER TRUNCATE ON users FOR EACH STATEMENT EXECUTE FUNCTION nas_sync_session_note();
