#!/bin/bash
# TEST FIXTURE, not shipped. The entrypoint of the stand-in for the official
# `postgres` image (see Dockerfile.postgres), for machines where no image registry
# answers. Written from the official image's documented behaviour, which the compose
# file relies on:
#   - POSTGRES_USER (default postgres), POSTGRES_PASSWORD, POSTGRES_DB (default the
#     user) and POSTGRES_INITDB_ARGS, each also read from NAME_FILE;
#   - on an empty data directory only: initdb with the superuser's password and
#     POSTGRES_INITDB_ARGS, a `host all all all scram-sha-256` line in pg_hba.conf
#     (POSTGRES_HOST_AUTH_METHOD overrides the method), then a temporary server that
#     listens on the Unix socket only while /docker-entrypoint-initdb.d runs (*.sh
#     executed when executable, else sourced; *.sql through psql), with PGPASSWORD
#     set so scripts can authenticate when local connections need a password;
#   - started as root, it fixes the data and socket folders' owners and modes, then
#     runs as the postgres user (uid 70, as in the Alpine image).
set -Eeuo pipefail

# NAME from NAME or from the file NAME_FILE names, never both.
file_env() {
  local var=$1 default=${2:-} file_var="${1}_FILE" value
  if [ -n "${!var:-}" ] && [ -n "${!file_var:-}" ]; then
    echo "postgres stand-in: both $var and $file_var are set" >&2
    exit 1
  fi
  value=$default
  if [ -n "${!var:-}" ]; then
    value=${!var}
  elif [ -n "${!file_var:-}" ]; then
    value=$(<"${!file_var}")
  fi
  export "$var=$value"
  unset "$file_var"
}

if [ "${1:0:1}" = '-' ]; then
  set -- postgres "$@"
fi

if [ "$1" = postgres ] && [ "$(id -u)" = 0 ]; then
  mkdir -p "$PGDATA" /var/run/postgresql
  chown postgres:postgres "$PGDATA" /var/run/postgresql
  chmod 700 "$PGDATA"
  chmod 3775 /var/run/postgresql
  exec setpriv --reuid=postgres --regid=postgres --init-groups "${BASH_SOURCE[0]}" "$@"
fi

if [ "$1" = postgres ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  file_env POSTGRES_PASSWORD
  file_env POSTGRES_USER postgres
  file_env POSTGRES_DB "$POSTGRES_USER"
  file_env POSTGRES_INITDB_ARGS
  if [ -z "$POSTGRES_PASSWORD" ] && [ "${POSTGRES_HOST_AUTH_METHOD:-}" != trust ]; then
    echo "postgres stand-in: the database is uninitialised and POSTGRES_PASSWORD is not set" >&2
    exit 1
  fi
  pwfile=$(mktemp)
  printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
  # The arguments are a string of options, as the official image takes them.
  eval 'initdb --username="$POSTGRES_USER" --pwfile="$pwfile" '"$POSTGRES_INITDB_ARGS"
  rm -f "$pwfile"
  printf 'host all all all %s\n' "${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}" >>"$PGDATA/pg_hba.conf"

  PGUSER=$POSTGRES_USER pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w start
  export PGPASSWORD="${PGPASSWORD:-$POSTGRES_PASSWORD}"
  run_psql() { psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --no-password --no-psqlrc "$@"; }
  if [ "$POSTGRES_DB" != postgres ]; then
    run_psql --dbname postgres --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
  fi
  for f in /docker-entrypoint-initdb.d/*; do
    case "$f" in
      *.sh)
        echo "postgres stand-in: running $f"
        # shellcheck disable=SC1090
        if [ -x "$f" ]; then "$f"; else . "$f"; fi
        ;;
      *.sql)
        echo "postgres stand-in: running $f"
        run_psql --dbname "$POSTGRES_DB" -f "$f"
        ;;
      *) ;;
    esac
  done
  unset PGPASSWORD
  pg_ctl -D "$PGDATA" -m fast -w stop
  echo "postgres stand-in: init process complete; ready for start up"
fi

exec "$@"
