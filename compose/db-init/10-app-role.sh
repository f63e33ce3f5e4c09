#!/bin/sh
# Run once by the postgres image when its data volume is new (docker-entrypoint-initdb.d):
# creates nas-sync's own role, which owns the nas_sync database and nothing else (no
# superuser, no CREATEDB, no CREATEROLE), with the password of secrets/db_password.txt.
# The superuser (POSTGRES_USER) keeps its own password, secrets/db_admin_password.txt.
pw=$(cat /run/secrets/db_password)
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres --set pw="$pw" <<'SQL'
CREATE ROLE nas_sync LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS
  PASSWORD :'pw';
CREATE DATABASE nas_sync OWNER nas_sync;
REVOKE ALL ON DATABASE nas_sync FROM PUBLIC;
GRANT ALL ON DATABASE nas_sync TO nas_sync;
SQL
