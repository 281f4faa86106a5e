#!/usr/bin/env bash
# Start a throwaway PostgreSQL server on 127.0.0.1 for the test suite and print its admin URL.
# Usage: eval "$(.ci/postgres.sh)"  -> exports SEGLOOP_TEST_POSTGRES_URL
set -euo pipefail
PORT="${SEGLOOP_PG_PORT:-54329}"
PGBIN="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)"
if [ -z "$PGBIN" ]; then
  if [ "$(id -u)" = 0 ]; then
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql) >&2
    PGBIN="$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)"
  else
    echo "echo 'PostgreSQL is not installed; PostgreSQL tests will be skipped' >&2"
    exit 0
  fi
fi
DATA="${SEGLOOP_PG_DATA:-/tmp/segloop-pg-$PORT}"
RUN_AS=()
if [ "$(id -u)" = 0 ]; then RUN_AS=(runuser -u postgres --); fi
if ! "${RUN_AS[@]}" "$PGBIN/pg_isready" -h 127.0.0.1 -p "$PORT" -q 2>/dev/null; then
  rm -rf "$DATA"
  mkdir -p "$DATA"
  [ "$(id -u)" = 0 ] && chown postgres "$DATA"
  "${RUN_AS[@]}" "$PGBIN/initdb" -D "$DATA" -U segloop --auth=trust -E UTF8 >&2
  "${RUN_AS[@]}" "$PGBIN/pg_ctl" -D "$DATA" -o "-h 127.0.0.1 -p $PORT -k /tmp -c fsync=off -c synchronous_commit=off -c max_connections=200" -l "$DATA/server.log" -w start >&2
fi
echo "export SEGLOOP_TEST_POSTGRES_URL=postgresql+psycopg://segloop@127.0.0.1:$PORT/postgres"
