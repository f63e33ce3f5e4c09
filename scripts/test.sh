#!/usr/bin/env bash
# Runs the whole test suite against the local PostgreSQL.
# TEST_DATABASE_URL names a server where the user may create databases; each test
# creates its own database there and drops it afterwards.
set -euo pipefail
cd "$(dirname "$0")/.."
export TEST_DATABASE_URL="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
exec cargo test --all-targets "$@"
