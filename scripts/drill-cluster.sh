#!/usr/bin/env bash
# A second PostgreSQL cluster for the restore drill (tests/it/cli/operator.rs), made with
# Debian's pg_createcluster: port 5499 (DRILL_PORT), trust authentication for local
# connections. Idempotent; needs root (or the postgres user). Prints the cluster's URL,
# and only that, on stdout: pg_ctlcluster prints notes there ("Removed stale pid file."
# after a machine was restored from a snapshot) and callers capture stdout.
set -euo pipefail
port="${DRILL_PORT:-5499}"

ensure_cluster() {
  command -v pg_createcluster >/dev/null || { echo "pg_createcluster is missing (Debian's postgresql-common)"; return 1; }
  local version
  version=$(ls /etc/postgresql | sort -n | tail -n 1)
  if ! pg_lsclusters -h | awk '{print $1"/"$2}' | grep -qx "$version/drill"; then
    pg_createcluster "$version" drill --port "$port" -- --auth-local=trust --auth-host=trust
  fi
  if ! pg_isready -h 127.0.0.1 -p "$port" -q; then
    pg_ctlcluster --skip-systemctl-redirect "$version" drill start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p "$port" -q && break; sleep 1; done
  fi
  pg_isready -h 127.0.0.1 -p "$port" -q
}

ensure_cluster >&2
echo "postgres://postgres@127.0.0.1:$port/postgres"
