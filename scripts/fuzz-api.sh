#!/usr/bin/env bash
# Fuzzes the HTTP API with Schemathesis (PyPI) against the server's own OpenAPI
# document (/api/openapi.json), as a manager, bounded in time. Fails on any 5xx
# (not_a_server_error), on an error answer that is not the contract's error object
# (error_shape, scripts/fuzz-api/hooks.py: whatever the route, method or status,
# axum's own rejections included), and on an answer that does not match the
# document's schema for its status (response_schema_conformance).
#
# The server is a real one (the debug build scripts/clients.sh already built) on a
# database of its own in the local PostgreSQL (scripts/pg-local.sh), seeded so the
# routes have something to work on: rows in every Insight table, an open conflict
# (kpi_data under the `manual` rule), an Odoo connection mirroring the fake Odoo
# (crates/fake-odoo, run as a process), and their ids offered to the `{id}`
# parameters (scripts/fuzz-api/schemathesis.toml, dictionaries).
#
# Reproducible in CI: a fixed seed (FUZZ_SEED, default below). By hand:
#   FUZZ_SEED=random ./scripts/fuzz-api.sh          # a new random seed (printed)
#   FUZZ_SEED=123 FUZZ_MAX_TIME=900 FUZZ_MAX_EXAMPLES=500 ./scripts/fuzz-api.sh
# Reports (JUnit, NDJSON events, a pytest file reproducing failures) go to
# target/fuzz-api/; the server's log is target/fuzz-api/server.log.
#
# Needs the local PostgreSQL and Python 3 (a venv under ~/.cache/nas-sync-ci).
# TEST_DATABASE_URL names the server (default postgres://postgres:postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
admin_url="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"
seed="${FUZZ_SEED:-20261130}"
# Wall-clock budget of the Schemathesis run (the whole CI must stay under 40 minutes).
max_time="${FUZZ_MAX_TIME:-240}"
max_examples="${FUZZ_MAX_EXAMPLES:-60}"
out=target/fuzz-api
version=4.32.5

echo "== Schemathesis $version" >&2
venv="${HOME:-/root}/.cache/nas-sync-ci/schemathesis-$version"
if ! "$venv/bin/schemathesis" --version 2>/dev/null | grep -q "$version"; then
  rm -rf "$venv"
  # Debian's python3 needs python3-venv for `-m venv`.
  python3 -m venv "$venv" 2>/dev/null || {
    rm -rf "$venv"
    apt-get install -y -qq python3-venv >/dev/null 2>&1 \
      || { apt-get update -qq && apt-get install -y -qq python3-venv >/dev/null; }
    python3 -m venv "$venv"
  }
  "$venv/bin/pip" install --quiet --disable-pip-version-check "schemathesis==$version"
fi

echo "== server" >&2
cargo build --quiet --bin nas-sync
cargo build --quiet -p fake-odoo --bin fake-odoo
bin=target/debug/nas-sync
rm -rf "$out" && mkdir -p "$out"
db="nas_fuzz_$(date +%s)_$$"
db_url="${admin_url%/*}/$db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
# Rate limits off: 429s would hide the logic behind them. A secret key, so creating
# an Odoo connection reaches Odoo (an unreachable URL is 502 ODOO_UNREACHABLE, which
# the configuration allows on those two operations only). Tokens outlive the run.
export DATABASE_URL="$db_url" NAS_SYNC_BIND="127.0.0.1:$port" NAS_SYNC_RATE_LIMIT=off \
  NAS_SYNC_LOG=warn NAS_SYNC_ACCESS_TOKEN_TTL_SECS=7200 \
  NAS_SYNC_SECRET_KEY="fuzz-secret-key-0123456789abcdef0123456789abcdef"
$bin migrate >&2
# Manual conflicts on kpi_data, so the seed can leave one open for the resolve route.
psql -q "$db_url" -c "UPDATE sync_tables SET rule = 'manual' WHERE table_name = 'kpi_data'" >/dev/null
echo fuzz-manager-pw | $bin user add fuzz-manager --role manager --password-stdin >&2
echo fuzz-store-pw | $bin user add fuzz-store --role store --store s1 --password-stdin >&2
# Outbound HTTP goes through a proxy that refuses every connection (port 9, discard,
# is not served), except to 127.0.0.1 where the fake Odoo is: whatever Odoo URL a
# request names, the run never reaches hosts on the internet.
HTTP_PROXY=http://127.0.0.1:9 HTTPS_PROXY=http://127.0.0.1:9 ALL_PROXY=http://127.0.0.1:9 \
  NO_PROXY=127.0.0.1,localhost $bin serve >"$out/server.log" 2>&1 &
server=$!
# The fake Odoo (crates/fake-odoo) the seeded connection mirrors from.
target/debug/fake-odoo >"$out/fake-odoo.url" 2>"$out/fake-odoo.log" &
odoo=$!
cleanup() {
  kill "$server" "$odoo" 2>/dev/null || true
  wait "$server" "$odoo" 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "$base/ready" >/dev/null && break
  sleep 0.2
done
curl -sf "$base/ready" >/dev/null || { echo "the server did not become ready:" >&2; cat "$out/server.log" >&2; exit 1; }
for _ in $(seq 1 50); do [ -s "$out/fake-odoo.url" ] && break; sleep 0.1; done
odoo_url=$(head -n 1 "$out/fake-odoo.url")
[ -n "$odoo_url" ] || { echo "the fake Odoo did not start:" >&2; cat "$out/fake-odoo.log" >&2; exit 1; }
printf '"%s"\n' "$odoo_url" >"$out/odoo-url.dict"

echo "== seed" >&2
# Logs in, seeds rows, a manual conflict and an Odoo connection to the fake, and
# writes the ids Schemathesis offers to `{id}` parameters; prints the manager's token.
token=$("$venv/bin/python" scripts/fuzz-api/seed.py "$base" "$out/ids.dict" "$odoo_url")

if [ "$seed" = random ]; then
  seed="$(python3 -c 'import random; print(random.randrange(1 << 31))')"
  echo "random seed: $seed (FUZZ_SEED=$seed reproduces it)" >&2
fi
echo "== schemathesis (seed $seed, at most ${max_time}s)" >&2
curl -sf "$base/api/openapi.json" -o "$out/openapi.json"
# Left out, and why: POST /api/v1/auth/logout and POST /api/v1/auth/tenant/logout end
# the manager's token (and release its device), so every request after them would be
# 401 and test nothing; for the same
# reason hooks.py sends new passwords meant for the run's own user to the store user,
# and the token is checked after the run. The rest is
# fuzzed, GET /api/v1/sync/ws too: as plain HTTP it cannot upgrade, and its refusal
# must still be the contract's error.
status=0
HYPOTHESIS_STORAGE_DIRECTORY="$out/hypothesis" SCHEMATHESIS_HOOKS=hooks PYTHONPATH=scripts/fuzz-api \
  "$venv/bin/schemathesis" --config-file scripts/fuzz-api/schemathesis.toml run "$out/openapi.json" \
  --url "$base" \
  -H "Authorization: Bearer $token" \
  --seed "$seed" --generation-database none \
  --max-examples "$max_examples" \
  --max-time "$max_time" \
  --request-timeout 30 \
  --workers 2 \
  --checks not_a_server_error,response_schema_conformance,error_shape \
  --exclude-operation-id logout \
  --exclude-operation-id tenantLogout \
  --report junit,ndjson,pytest --report-dir "$out" \
  --no-color || status=$?
if ! kill -0 "$server" 2>/dev/null; then
  echo "the server died during the run:" >&2
  tail -n 50 "$out/server.log" >&2
  exit 1
fi
# A run whose token died part way tested nothing after that point: say so and fail.
if ! curl -sf -H "Authorization: Bearer $token" "$base/api/v1/sync/status" >/dev/null; then
  echo "the run's token stopped working during the run (a route ended the manager's own" >&2
  echo "session); the requests after that tested nothing. Server log:" >&2
  grep -iE "revoked|password|disabled|released|signed out" "$out/server.log" | tail -n 5 >&2
  status=1
fi
if grep -q "panicked" "$out/server.log"; then
  echo "a request handler panicked:" >&2
  grep -m 5 "panicked" "$out/server.log" >&2
  status=1
fi
if [ "$status" -ne 0 ]; then
  echo "fuzz-api: failures (seed $seed); reports in $out, server log $out/server.log" >&2
  exit "$status"
fi
echo "fuzz-api: no 5xx, every error in the contract's shape (seed $seed)" >&2
