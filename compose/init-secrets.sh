#!/bin/sh
# Writes the secrets the compose file reads, once: random passwords and the database URL
# that matches them. Safe to run again (existing files are kept).
set -eu
cd "$(dirname "$0")"
# The folder is private to you; the files inside are readable by the containers'
# users (nas-sync runs as uid 10001; compose mounts secrets with the host's modes).
mkdir -p secrets backups
chmod 700 secrets
umask 022
rand() { head -c 32 /dev/urandom | base64 | tr -d '/+=\n' | cut -c1-32; }
[ -s secrets/db_password.txt ] || rand > secrets/db_password.txt
[ -s secrets/jwt_secret.txt ] || rand > secrets/jwt_secret.txt
[ -s secrets/database_url.txt ] || \
  echo "postgres://nas_sync:$(cat secrets/db_password.txt)@db:5432/nas_sync" > secrets/database_url.txt
# Tailscale (only for --profile tailscale): paste an auth key from the admin console.
[ -e secrets/ts_authkey.txt ] || : > secrets/ts_authkey.txt
chmod 644 secrets/*.txt
echo "secrets ready in $(pwd)/secrets"
