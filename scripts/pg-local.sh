#!/usr/bin/env bash
# Prepares the local PostgreSQL the README, the tests, CI and the benchmark use:
# starts the newest installed cluster if nothing answers on 127.0.0.1:5432, waits for
# it, and gives the `postgres` role the password `postgres` (local connections may
# require one). Idempotent; prints progress to stderr only. Used by .ci/run and
# scripts/bench.sh.
set -euo pipefail

if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    echo "pg-local: no PostgreSQL cluster is installed (apt-get install postgresql)" >&2
    exit 1
  fi
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  echo "pg-local: starting PostgreSQL $version" >&2
  pg_ctlcluster --skip-systemctl-redirect "$version" main start >&2
  for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
pg_isready -h 127.0.0.1 -p 5432 >&2

sql="ALTER ROLE postgres PASSWORD 'postgres'"
if command -v runuser >/dev/null; then
  runuser -u postgres -- psql -q -c "$sql" >&2 \
    || PGPASSWORD=postgres psql -q -h 127.0.0.1 -U postgres -c "$sql" >&2
else
  su postgres -c "psql -q -c \"$sql\"" >&2
fi
