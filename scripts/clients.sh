#!/usr/bin/env bash
# Proves the OpenAPI document the way an app team uses it: validates the 3.1 and 3.0
# documents (openapi-spec-validator), generates a Python client (openapi-python-client)
# and drives a real server with it (tests/clients/python_client.py), runs the reference
# client's offline-first scenarios (tests/clients/scenarios), and generates the
# Dart client (openapi-generator-cli, dart-dio) and checks it has the row models.
# Generated code goes to target/clients/ and is never edited or committed.
#
# Needs the local PostgreSQL (scripts/pg-local.sh), Python 3 and Java 11+.
# TEST_DATABASE_URL names the server (default postgres://postgres:postgres@127.0.0.1:5432/postgres).
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/clients
admin_url="${TEST_DATABASE_URL:-postgres://postgres:postgres@127.0.0.1:5432/postgres}"

echo "== client tools" >&2
for tool in openapi-spec-validator openapi-python-client openapi-generator-cli; do
  command -v "$tool" >/dev/null || python3 -m pip install --quiet --disable-pip-version-check "$tool"
done
command -v java >/dev/null || { apt-get install -y -qq default-jre-headless >/dev/null 2>&1 \
  || { apt-get update -qq && apt-get install -y -qq default-jre-headless >/dev/null; }; }

echo "== server" >&2
cargo build --quiet --bin nas-sync
db="nas_clients_$(date +%s)_$$"
db_url="${admin_url%/*}/$db"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
base="http://127.0.0.1:$port"
export DATABASE_URL="$db_url" NAS_SYNC_BIND="127.0.0.1:$port" NAS_SYNC_RATE_LIMIT=off NAS_SYNC_LOG=warn
target/debug/nas-sync migrate >&2
for user in client-alice client-bob; do
  echo client-test-pw | target/debug/nas-sync user add "$user" --role manager --password-stdin >&2
done
target/debug/nas-sync serve >"$out.server.log" 2>&1 &
server=$!
cleanup() {
  kill "$server" 2>/dev/null || true
  wait "$server" 2>/dev/null || true
  psql -q "$admin_url" -c "DROP DATABASE IF EXISTS $db WITH (FORCE)" >/dev/null 2>&1 || true
}
trap cleanup EXIT
for _ in $(seq 1 100); do
  curl -sf "$base/ready" >/dev/null && break
  sleep 0.2
done
curl -sf "$base/ready" >/dev/null || { echo "the server did not become ready:" >&2; cat "$out.server.log" >&2; exit 1; }

rm -rf "$out" && mkdir -p "$out"
curl -sf "$base/api/openapi.json" -o "$out/openapi.json"
curl -sf "$base/api/openapi-3.0.json" -o "$out/openapi-3.0.json"
# The documents for apps that keep exact decimals (numeric columns as strings, with
# the Nas-Sync-Decimals: string header): the reference client and the Dart client use them.
mkdir -p "$out/decimal"
curl -sf "$base/api/openapi.json?decimals=string" -o "$out/decimal/openapi.json"
curl -sf "$base/api/openapi-3.0.json?decimals=string" -o "$out/decimal/openapi-3.0.json"

echo "== validate" >&2
for doc in openapi.json openapi-3.0.json decimal/openapi.json decimal/openapi-3.0.json; do
  openapi-spec-validator "$out/$doc"
done

echo "== Python client (openapi-python-client), driving the server" >&2
(cd "$out" && openapi-python-client generate --path openapi.json --meta none \
   --output-path nas_sync_client >/dev/null)
PYTHONPATH="$out" python3 tests/clients/python_client.py "$base"

echo "== reference client (clients/reference): the offline-first scenarios" >&2
# Its own server and database (it kills and restores them), behind a proxy it cuts.
python3 -c 'import websockets' 2>/dev/null \
  || python3 -m pip install --quiet --disable-pip-version-check 'websockets>=14'
(cd "$out/decimal" && openapi-python-client generate --path openapi.json --meta none \
   --output-path nas_sync_client >/dev/null)
mkdir -p "$out/scenarios"
PYTHONPATH="$out/decimal:clients/reference" python3 tests/clients/scenarios/run.py \
  target/debug/nas-sync "$admin_url" "$out/scenarios" \
  || { echo "the scenarios' server log:" >&2; tail -n 40 "$out/scenarios/server.log" >&2; exit 1; }

echo "== Dart client (openapi-generator-cli, dart-dio)" >&2
openapi-generator-cli generate -g dart-dio -i "$out/decimal/openapi-3.0.json" -o "$out/dart" \
  --additional-properties=pubName=nas_sync_client >"$out/dart.log" 2>&1 \
  || { tail -n 30 "$out/dart.log" >&2; exit 1; }
models="$out/dart/lib/src/model"
for model in form_row kpi_data_row submission_row submission_answer_row sync_changes api_error pull_response push_request ws_message; do
  [ -f "$models/$model.dart" ] || { echo "dart-dio generated no $model.dart" >&2; exit 1; }
done
grep -q 'BuiltList<KpiDataRow>' "$models/sync_changes.dart" \
  || { echo "SyncChanges is not typed by table" >&2; exit 1; }
# No generated class may shadow a name every Dart or Flutter file sees (dart:core,
# package:flutter/material.dart): a clash makes an ambiguous import in the app.
for clash in error form type object list map set string duration table_row row column text state widget key color icon image response; do
  [ ! -f "$models/$clash.dart" ] || { echo "dart-dio generated $clash.dart: the class clashes with Dart or Flutter" >&2; exit 1; }
done
# Exact decimals: the row model holds the digits as a string, not a double.
grep -q "String? get value" "$models/kpi_data_row.dart" \
  || { echo "dart-dio's KpiDataRow.value is not a String: decimals would lose digits" >&2; exit 1; }
# A nullable column is sent even when null (required in the row schema), so an app can
# clear it: dart-dio leaves out an optional field that is null.
grep -q "yield object.description == null ? null" "$models/form_row.dart" \
  || { echo "dart-dio's FormRow leaves out a null description: the app could not clear it" >&2; exit 1; }
# The Dart in docs/clients.md uses only what dart-dio generated from this document.
python3 scripts/check-dart-docs.py docs/clients.md "$out/dart"
grep -q 'SyncChanges' "$models/pull_response.dart" \
  || { echo "PullResponse.changes is not SyncChanges" >&2; exit 1; }
echo "clients: the documents are valid, the Python client drove the server, the Dart client has its row models" >&2
