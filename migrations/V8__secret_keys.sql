-- Odoo API keys at rest (docs/contract.md §9, docs/operations.md#security): sealed
-- with XChaCha20-Poly1305 under a key derived from NAS_SYNC_SECRET_KEY
-- (src/secrets.rs), so a database dump carries no usable key.
--
-- `api_key_sealed` is version byte 1, a random 24-byte nonce, then ciphertext and tag;
-- the connection's id is authenticated with it, so a sealed key copied to another
-- connection does not open. `api_key` (plain text) remains only for keys stored
-- before this version: a server started with NAS_SYNC_SECRET_KEY seals them in place
-- and empties the column. Exactly one of the two holds a connection's key.

ALTER TABLE odoo_connections ALTER COLUMN api_key DROP NOT NULL;
ALTER TABLE odoo_connections ADD COLUMN api_key_sealed bytea;
ALTER TABLE odoo_connections ADD CONSTRAINT odoo_connections_one_key
    CHECK ((api_key IS NULL) <> (api_key_sealed IS NULL));
