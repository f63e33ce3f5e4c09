#!/usr/bin/env bash
# Runs the whole test suite against the local PostgreSQL.
# TEST_DATABASE_URL names a server where the user may create databases; each test
# creates its own database there and drops it afterwards. The restore drill also needs
# a second cluster (DRILL_DATABASE_URL); scripts/drill-cluster.sh makes one when it can.
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
if [ -z "${DRILL_DATABASE_URL:-}" ]; then
  if url=$(./scripts/drill-cluster.sh 2>/tmp/nas-sync-drill.err); then
    # The last line is the URL, whatever else a PostgreSQL tool printed.
    export DRILL_DATABASE_URL="$(printf '%s\n' "$url" | tail -n 1)"
  else
    echo "note: no second PostgreSQL cluster for the restore drill ($(cat /tmp/nas-sync-drill.err)); that test will fail with instructions" >&2
  fi
fi
# --workspace: the fake Odoo (crates/fake-odoo) has tests of its own.
exec cargo test --workspace --all-targets "$@"
