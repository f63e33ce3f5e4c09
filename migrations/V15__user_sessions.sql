-- BridgeCore's tenant login: a session of a user, not of a device. Its access tokens
-- name no device; each sync call names one, registered to the user at first use under
-- the usual ownership rules. Its refresh token is not rotated (BridgeCore's clients
-- keep reusing the one they got at login); it ends at logout, when the user is
-- disabled or gets a new password, or when it expires.
CREATE TABLE user_sessions (
    id           uuid PRIMARY KEY DEFAULT gen_random_uuid(),
    tenant_id    text NOT NULL,
    user_id      uuid NOT NULL REFERENCES users(id) ON DELETE CASCADE,
    refresh_hash bytea NOT NULL UNIQUE,
    created_at   timestamptz NOT NULL DEFAULT now(),
    expires_at   timestamptz NOT NULL,
    ended_at     timestamptz
);
CREATE INDEX user_sessions_user ON user_sessions (user_id);
