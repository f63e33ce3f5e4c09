-- A user's identity for apps built on BridgeCore: the email its tenant login names
-- (unique across tenants, as usernames are: the login names no tenant) and the Odoo
-- user id the smart-sync routes name (unique within a tenant).
ALTER TABLE users ADD COLUMN email text;
ALTER TABLE users ADD COLUMN odoo_user_id bigint CHECK (odoo_user_id > 0);
CREATE UNIQUE INDEX users_email_key ON users (lower(email));
CREATE UNIQUE INDEX users_odoo_user_id_key ON users (tenant_id, odoo_user_id);
