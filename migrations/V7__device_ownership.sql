-- Device ownership, token generations and disabled users (docs/contract.md §9).

-- A device's token generation: every access token carries the generation it was issued
-- under, and the per-request check refuses a token whose generation is not the
-- device's. Ending a device's tokens (logout, release, a replayed refresh token, its
-- user disabled or given a new password) draws a new one. Generations come from one
-- sequence, so a device id released and logged in again never meets an old number.
-- Devices that exist now keep 0, the generation of tokens issued before this
-- migration (their claims carry none), so an upgrade signs nobody out.
CREATE SEQUENCE device_token_generation;
ALTER TABLE devices ADD COLUMN token_generation bigint NOT NULL DEFAULT 0;
ALTER TABLE devices ALTER COLUMN token_generation SET DEFAULT nextval('device_token_generation');

-- A disabled user cannot log in, and its tokens fail at once.
ALTER TABLE users ADD COLUMN disabled_at timestamptz;

-- Refresh tokens are now kept until they expire, used or not, so a replayed one is
-- recognised; ending a user's tokens finds them by user.
CREATE INDEX refresh_tokens_user ON refresh_tokens (user_id);
-- ... and a user's devices by user.
CREATE INDEX devices_user ON devices (user_id);
