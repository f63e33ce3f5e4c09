#!/usr/bin/env bash
# The performance benchmark, one command: makes sure the local PostgreSQL
# runs (as .ci/run does), builds the release server and the bench tool, and runs every
# scenario against the real server binary over HTTP, each next to its baseline.
#
#   ./scripts/bench.sh                 # full run, about 20 minutes on 2 cores
#   ./scripts/bench.sh --quick         # smaller sizes, about 2 minutes
#   ./scripts/bench.sh --only a,c --out target/bench/ac.json [--keep]
#
# BENCH_DATABASE_URL names a PostgreSQL server where the user may create databases
# (default postgres://postgres:postgres@127.0.0.1:5432/postgres); the tool creates
# nas_bench_<random> there and drops it afterwards (unless --keep). The table goes to
# stdout, progress to stderr, JSON to --out (default target/bench/results.json).
set -euo pipefail
cd "$(dirname "$0")/.."
export BENCH_DATABASE_URL="${BENCH_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

# PostgreSQL: only the local default server is started and given its password here.
case "$BENCH_DATABASE_URL" in
  *@127.0.0.1:5432/*|*@localhost:5432/*) ./scripts/pg-local.sh ;;
esac

echo "== building (release)" >&2
cargo build --release --bin nas-sync --example bench >&2

exec target/release/examples/bench "$@"
