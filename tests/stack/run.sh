#!/usr/bin/env bash
# The NAS install, run for real on a Docker engine (called by .ci/run; run it alone
# with `./tests/stack/run.sh`). As a new user would, from a clean copy of the
# repository, following nas/README.md's "Building from source" quick start with the
# default and `backup` profiles:
#   init-secrets.sh, .env lines, `docker-compose build` (BuildKit), `up -d`
# then checks what an owner relies on: every container healthy within its start
# period; nas-sync not root; no PostgreSQL role reachable without a password over the
# socket or TCP (from the app container, as an intruder in it would try); /health and
# /ready on the published port; `nas-sync user add`, login, push and pull with curl;
# /admin sign-in; the first scheduled backup holds the migrated schema, mode 0600, and
# the backup container turns healthy; the documented backup and restore bring a
# deleted row back (old cursors answer RESYNC_REQUIRED); a restart of db is survived
# without restarting nas-sync; `down` then `up` keeps the data; `stop` takes under 3 s
# for every service.
#
# Needs root (or the docker group) and installs what is missing: docker.io,
# docker-compose (1.x: the same Compose file format; Compose v2's stricter parsing is
# checked by .github/check-compose.py), mmdebstrap, curl, jq. Starts dockerd when none
# runs. Base images that no registry serves are built as stand-ins from Debian
# packages (tests/stack/standins.sh: TEST FIXTURES, the published files keep the
# official images). The Tailscale profile is not started (no Tailscale image or
# tailnet here); its configuration is checked statically.
set -euo pipefail
# Debian's docker.io CLI (20.10, BuildKit built in) before any other docker on the
# PATH: a newer CLI without the buildx plugin refuses DOCKER_BUILDKIT=1.
export PATH="/usr/bin:$PATH"
here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
started=$(date +%s)
step() { echo "== stack [$(($(date +%s) - started)) s] $*" >&2; }
fail() { echo "stack: FAIL: $*" >&2; exit 1; }

work=$(mktemp -d /tmp/nas-sync-stack.XXXXXX)
export COMPOSE_PROJECT_NAME="nas-sync-stack-$$"
old_db="$COMPOSE_PROJECT_NAME-old-db"
cleanup() {
  status=$?
  docker rm -f "$old_db" >/dev/null 2>&1 || true
  if [ -d "$work/repo/compose" ]; then
    if [ "$status" != 0 ]; then
      echo "---- docker-compose ps and logs (the run failed)" >&2
      (cd "$work/repo/compose" && docker-compose ps && docker-compose logs --no-color --tail 80) >&2 || true
    fi
    (cd "$work/repo/compose" && docker-compose down -v --remove-orphans >/dev/null 2>&1) || true
  fi
  rm -rf "$work"
  if [ -n "$dockerd_pid" ]; then
    kill "$dockerd_pid" 2>/dev/null || true
    for _ in $(seq 1 20); do kill -0 "$dockerd_pid" 2>/dev/null || break; sleep 0.5; done
  fi
  exit "$status"
}
dockerd_pid=
trap cleanup EXIT

step "tools"
need=()
command -v dockerd >/dev/null || need+=(docker.io)
command -v docker-compose >/dev/null || need+=(docker-compose)
command -v mmdebstrap >/dev/null || need+=(mmdebstrap)
command -v curl >/dev/null || need+=(curl)
command -v jq >/dev/null || need+=(jq)
if [ ${#need[@]} -gt 0 ]; then
  apt-get install -y -qq "${need[@]}" >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq "${need[@]}" >/dev/null; }
fi

step "Docker engine"
if ! docker info >/dev/null 2>&1; then
  # Started here, stopped at the end (the rest of CI needs no engine).
  nohup dockerd >/var/log/nas-sync-stack-dockerd.log 2>&1 &
  dockerd_pid=$!
  for _ in $(seq 1 60); do docker info >/dev/null 2>&1 && break; sleep 1; done
  docker info >/dev/null 2>&1 || { tail -n 30 /var/log/nas-sync-stack-dockerd.log >&2; fail "dockerd did not start"; }
fi
docker version --format 'engine {{.Server.Version}}, client {{.Client.Version}}' >&2

step "base images (stand-ins where no registry answers)"
"$here/standins.sh"

# A clean copy of the repository, as `git clone` gives (with this checkout's
# uncommitted changes, so the script tests what is on disk).
mkdir -p "$work/repo"
(cd "$root" && git ls-files -z --cached --others --exclude-standard \
  | while IFS= read -r -d '' f; do [ -e "$f" ] && printf '%s\0' "$f"; done \
  | xargs -0 cp --parents -t "$work/repo")

port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
api="http://127.0.0.1:$port"
cd "$work/repo/compose"

step "settings, as nas/README.md's build-from-source steps write them"
sh init-secrets.sh >&2
echo 'COMPOSE_FILE=docker-compose.yml:docker-compose.build.yml' >> .env
echo 'COMPOSE_PROFILES=backup' >> .env
# This test's own: a free port (LAN_PORT, documented), the default subnet kept.
sed -i "s/^LAN_PORT=.*/LAN_PORT=$port/" .env
export DOCKER_BUILDKIT=1 COMPOSE_DOCKER_CLI_BUILD=1

step "docker-compose build (the project's Dockerfile)"
build_started=$(date +%s)
docker-compose build >"$work/build.log" 2>&1 || { tail -n 80 "$work/build.log" >&2; fail "the image did not build"; }
size=$(docker image inspect nas-sync:local --format '{{.Size}}')
echo "image nas-sync:local: $((size / 1000000)) MB (built in $(($(date +%s) - build_started)) s)" >&2
[ "$size" -lt 60000000 ] || fail "the image is $((size / 1000000)) MB, the target is under 60 MB"

step "docker-compose up --no-start (the engine accepts every service)"
docker-compose up --no-start >&2

step "up -d; every container healthy within its start period"
up_at=$(date +%s)
docker-compose up -d >&2
cid() { docker-compose ps -q "$1"; }
health() { docker inspect --format '{{if .State.Health}}{{.State.Health.Status}}{{else}}none{{end}}' "$(cid "$1")"; }
# Waits for SERVICE to be healthy within LIMIT seconds of `up`, then reports how long
# after its container started the first probe passed (`up -d` itself waits for
# dependencies, so the time to see it here says less).
wait_healthy() {
  local svc=$1 limit=$2 from=${3:-$up_at} c started first
  while [ "$(health "$svc")" != healthy ]; do
    [ $(($(date +%s) - from)) -le "$limit" ] || fail "$svc is $(health "$svc") after ${limit} s"
    sleep 1
  done
  c=$(cid "$svc")
  started=$(date -d "$(docker inspect --format '{{.State.StartedAt}}' "$c")" +%s)
  # The probe log outlives a restart: the first pass since this start.
  first=$(docker inspect --format '{{json .State.Health.Log}}' "$c" \
    | jq -r '.[] | select(.ExitCode == 0) | .End' \
    | while read -r end; do t=$(date -d "$end" +%s); [ "$t" -ge "$started" ] && { echo "$t"; break; }; done)
  echo "$svc healthy $(( ${first:-$(date +%s)} - started )) s after its start" >&2
}
# db: 10 retries 10 s apart; nas-sync: probed every 10 s; backup: its first dump
# once nas-sync is healthy, seen within its 30 s interval.
wait_healthy db 100
wait_healthy nas-sync 100
wait_healthy backup 160

step "nas-sync runs as uid 10001, not root"
user=$(docker inspect --format '{{.Config.User}}' "$(cid nas-sync)")
[ "$user" = "10001:10001" ] || fail "nas-sync runs as '$user'"
uid=$(docker top "$(cid nas-sync)" -eo pid,uid,comm | awk '$3 == "nas-sync" { print $2 }' | head -n 1)
[ "$uid" = 10001 ] || fail "the nas-sync process has uid '$uid'"

step "no role logs in without a password, over the socket or TCP"
for target in "-h /var/run/postgresql" "-h db"; do
  for role in postgres nas_sync; do
    # As an intruder in the app container would try: psql ships in the image.
    # shellcheck disable=SC2086
    if docker-compose exec -T -e PGPASSWORD= nas-sync psql $target -U "$role" -d postgres -w -Atc 'SELECT 1' >/dev/null 2>&1; then
      fail "$role logs in without a password ($target) from the nas-sync container"
    fi
  done
done
doctor=$(docker-compose exec -T nas-sync nas-sync doctor) || { echo "$doctor" >&2; fail "doctor is not healthy"; }
grep -q '^ok   passwords' <<<"$doctor" || { echo "$doctor" >&2; fail "doctor did not check passwords"; }
grep -q '^ok   database role' <<<"$doctor" || { echo "$doctor" >&2; fail "nas-sync's role is not a restricted one"; }

step "/health and /ready on the published port (127.0.0.1 only)"
curl -fsS "$api/health" | grep -q '"ok"' || fail "/health"
curl -fsS "$api/ready" | grep -q '"ready"' || fail "/ready"
docker port "$(cid nas-sync)" 8080 | grep -qx "127.0.0.1:$port" || fail "the port is not on 127.0.0.1 only: $(docker port "$(cid nas-sync)" 8080)"
logs=$(docker-compose logs --no-color nas-sync)
if grep -q $'\e\[' <<<"$logs"; then fail "nas-sync's log holds ANSI colour codes"; fi

step "first manager, login, push, pull (curl)"
echo 'stack-manager-pw' | docker-compose exec -T nas-sync nas-sync user add alice --role manager --password-stdin >"$work/useradd.txt" 2>&1 \
  || { cat "$work/useradd.txt" >&2; fail "user add"; }
if grep -qi 'migration' "$work/useradd.txt"; then cat "$work/useradd.txt" >&2; fail "user add printed migration lines"; fi
login() {
  curl -fsS "$api/api/v1/auth/login" -H 'content-type: application/json' \
    -d '{"username":"alice","password":"stack-manager-pw","device_id":"stack-check-01"}' | jq -er .access_token
}
token=$(login) || fail "login"
form_id=3f1f8a62-8f7d-4a53-9d55-0b8b7d1c2a10
push() {
  curl -fsS "$api/api/v1/sync/push" -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$1"
}
push '{"device_id":"stack-check-01","push_id":"stack-push-0001","timestamp":"2026-01-01T10:00:00Z",
  "changes":{"forms":[{"id":"'"$form_id"'","title":"Daily check","updated_at":"2026-01-01T09:50:00Z","version":0}]}}' \
  | jq -e '.success == true' >/dev/null || fail "push"
pull() {
  curl -sS "$api/api/v1/sync/pull" -H "authorization: Bearer $token" -H 'content-type: application/json' -d "$1"
}
first=$(pull '{"device_id":"stack-check-01"}')
jq -e --arg id "$form_id" '[.changes.forms[]? | select(.id == $id and .title == "Daily check")] | length == 1' <<<"$first" >/dev/null \
  || { echo "$first" >&2; fail "the pushed row is not in a full pull"; }
cursor=$(jq -r .cursor <<<"$first")
version=$(jq -r --arg id "$form_id" '.changes.forms[] | select(.id == $id) | .version' <<<"$first")

step "/admin sign-in"
jar="$work/cookies"
page=$(curl -fsS -c "$jar" "$api/admin/login")
csrf=$(sed -n 's/.*name="csrf" value="\([^"]*\)".*/\1/p' <<<"$page" | head -n 1)
[ -n "$csrf" ] || fail "no CSRF token on /admin/login"
status=$(curl -sS -o /dev/null -w '%{http_code}' -b "$jar" -c "$jar" -H "Origin: $api" \
  --data-urlencode "csrf=$csrf" --data-urlencode username=alice --data-urlencode password=stack-manager-pw \
  "$api/admin/login")
[ "$status" = 303 ] || fail "/admin/login answered $status"
curl -fsS -b "$jar" "$api/admin" | grep -q 'Overview' || fail "/admin after sign-in"

step "the first scheduled backup: the migrated schema, mode 0600"
first_dump=$(ls -1 backups/nas-sync-*.dump | head -n 1)
[ -n "$first_dump" ] || fail "no scheduled backup in backups/"
mode=$(stat -c %a "$first_dump")
[ "$mode" = 600 ] || fail "$first_dump has mode $mode"
toc=$(docker-compose run --rm --no-deps --entrypoint pg_restore backup --list "/backups/$(basename "$first_dump")")
tables=$(grep -c ' TABLE public ' <<<"$toc" || true)
for t in refinery_schema_history server_meta forms devices users; do
  grep -q " TABLE public $t " <<<"$toc" || fail "the first backup has no table $t ($tables tables)"
done
echo "first backup: $(basename "$first_dump"), $tables tables" >&2
docker-compose exec -T backup nas-sync backup-check >&2 || fail "backup-check"

step "the documented backup and restore bring a deleted row back"
docker-compose run --rm --no-deps --entrypoint nas-sync backup backup --output /backups/manual-stack.dump >&2
push '{"device_id":"stack-check-01","push_id":"stack-push-0002","timestamp":"2026-01-01T11:00:00Z",
  "changes":{"forms":[{"id":"'"$form_id"'","deleted":true,"version":'"$version"'}]}}' \
  | jq -e '.success == true' >/dev/null || fail "delete push"
gone=$(pull '{"device_id":"stack-check-01"}')
jq -e --arg id "$form_id" '[.changes.forms[]? | select(.id == $id and .deleted != true)] | length == 0' <<<"$gone" >/dev/null \
  || { echo "$gone" >&2; fail "the deleted row is still in a full pull"; }
docker-compose stop nas-sync backup >&2
docker-compose run --rm --no-deps --entrypoint nas-sync backup restore --replace --input /backups/manual-stack.dump >&2
up_at=$(date +%s)
docker-compose up -d >&2
wait_healthy nas-sync 100
token=$(login) || fail "login after the restore"
old=$(pull '{"device_id":"stack-check-01","cursor":"'"$cursor"'"}')
jq -e '.code == "RESYNC_REQUIRED"' <<<"$old" >/dev/null || { echo "$old" >&2; fail "an old cursor did not answer RESYNC_REQUIRED"; }
back=$(pull '{"device_id":"stack-check-01"}')
jq -e --arg id "$form_id" '[.changes.forms[]? | select(.id == $id and .title == "Daily check" and .deleted != true)] | length == 1' <<<"$back" >/dev/null \
  || { echo "$back" >&2; fail "the restore did not bring the row back"; }

step "a restart of db is survived without restarting nas-sync"
before=$(docker inspect --format '{{.State.StartedAt}} {{.RestartCount}}' "$(cid nas-sync)")
up_at=$(date +%s)
docker-compose restart db >&2
wait_healthy db 100
ok=
for _ in $(seq 1 30); do
  if pull '{"device_id":"stack-check-01"}' | jq -e --arg id "$form_id" '[.changes.forms[]? | select(.id == $id)] | length == 1' >/dev/null 2>&1; then ok=1; break; fi
  sleep 1
done
[ -n "$ok" ] || fail "pulls did not work again after db restarted"
after=$(docker inspect --format '{{.State.StartedAt}} {{.RestartCount}}' "$(cid nas-sync)")
[ "$before" = "$after" ] || fail "nas-sync restarted with db ($before -> $after)"

step "down, then up: the data is kept"
docker-compose down >&2
up_at=$(date +%s)
docker-compose up -d >&2
wait_healthy db 100
wait_healthy nas-sync 100
token=$(login) || fail "login after down and up"
kept=$(pull '{"device_id":"stack-check-01"}')
jq -e --arg id "$form_id" '[.changes.forms[]? | select(.id == $id and .deleted != true)] | length == 1' <<<"$kept" >/dev/null \
  || { echo "$kept" >&2; fail "the row is gone after down and up"; }
wait_healthy backup 160

step "stop takes under 3 s for every service, none killed"
for svc in backup nas-sync db; do
  t0=$(date +%s%N)
  docker-compose stop "$svc" >/dev/null 2>&1
  ms=$((($(date +%s%N) - t0) / 1000000))
  code=$(docker inspect --format '{{.State.ExitCode}}' "$(cid "$svc")")
  echo "stop $svc: $ms ms, exit code $code" >&2
  [ "$ms" -lt 3000 ] || fail "stopping $svc took $ms ms"
  [ "$code" != 137 ] || fail "$svc was killed (exit 137): it ignored SIGTERM"
done

step "the documented pg_hba.conf change for installs made before passwords were required"
# A database volume made the old way (initdb's default: the socket trusted), then the
# one command nas/README.md gives, taken from the page itself.
fix=$(sed -n "s/^docker compose exec -u postgres db sh -c '\(.*\)'\$/\1/p" "$root/nas/README.md")
[ -n "$fix" ] || fail "nas/README.md gives no pg_hba.conf command"
docker run -d --name "$old_db" -e POSTGRES_PASSWORD=old-admin-pw postgres:15-alpine >/dev/null
for _ in $(seq 1 60); do docker exec "$old_db" pg_isready -h 127.0.0.1 -U postgres -q && break; sleep 1; done
docker exec "$old_db" psql -U postgres -w -Atc 'SELECT 1' >/dev/null 2>&1 \
  || fail "the old-style volume does not trust the socket: this check would prove nothing"
docker exec -u postgres "$old_db" sh -c "$fix" >&2
if docker exec "$old_db" psql -U postgres -w -Atc 'SELECT 1' >/dev/null 2>&1; then
  fail "after the documented change the superuser still logs in over the socket without a password"
fi
docker exec -e PGPASSWORD=old-admin-pw "$old_db" psql -U postgres -Atc 'SELECT 1' >/dev/null \
  || fail "after the documented change the superuser cannot log in with its password"
docker rm -f "$old_db" >/dev/null

step "passed in $(($(date +%s) - started)) s"
