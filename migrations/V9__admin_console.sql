-- The admin console (docs/contract.md section 10): signed-in managers' sessions, and
-- pulls per hour for its Overview chart.

CREATE TABLE admin_sessions (
    -- SHA-256 of the session cookie's value; the value itself is never stored.
    token_hash  bytea PRIMARY KEY,
    user_id     uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    -- The session's CSRF token, sent back in every form.
    csrf        text NOT NULL,
    -- A one-shot message for the next page ("Device revoked.").
    flash       text,
    created_at  timestamptz NOT NULL DEFAULT now(),
    expires_at  timestamptz NOT NULL
);
CREATE INDEX admin_sessions_user ON admin_sessions (user_id);
CREATE INDEX admin_sessions_expiry ON admin_sessions (expires_at);

CREATE TABLE sync_activity (
    tenant_id  text NOT NULL,
    hour       timestamptz NOT NULL,
    pulls      bigint NOT NULL DEFAULT 0,
    PRIMARY KEY (tenant_id, hour)
);

-- Pushes per hour are counted from the history (one transaction per push); a BRIN
-- index keeps that cheap on an append-only table without slowing writes.
CREATE INDEX sync_row_history_changed_brin ON sync_row_history USING brin (changed_at);
