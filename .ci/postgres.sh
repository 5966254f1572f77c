#!/usr/bin/env bash
# A throwaway PostgreSQL server for the tests of postgresql:// histories (issue 14).
#
#   eval "$(.ci/postgres.sh start)"     # prints export lines: FORECASTER_PG_URL, FORECASTER_PG_DIR, ...
#   .ci/postgres.sh stop                # stops the server of $FORECASTER_PG_DIR and removes its folder
#
# start: installs Debian's postgresql if initdb/pg_ctl are missing, creates a cluster in a
# temporary folder (owned by the postgres user when run as root: PostgreSQL refuses to run as
# root), starts it on a free loopback port with its socket in that folder, creates a database
# and a read-only user with a random password, and seeds table deals with the synthetic history
# of tests/history/history_tables.py (FORECASTER_PG_ROWS rows, seed FORECASTER_PG_SEED), which
# tests/history/test_postgres_source.py regenerates to compare. Everything it says goes to
# stderr; only the export lines go to stdout. On failure it prints the server's log, removes
# what it made and exits 1.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
ROWS=${FORECASTER_PG_ROWS:-400}
SEED=${FORECASTER_PG_SEED:-14}
PYTHON=${PYTHON:-$ROOT/.venv/bin/python}
[ -x "$PYTHON" ] || PYTHON=python3  # the history's generator needs only the standard library

say() { echo "postgres.sh: $*" >&2; }

find_bin() {
  local d
  for d in $(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V -r); do
    [ -x "$d/initdb" ] && [ -x "$d/pg_ctl" ] && { echo "$d"; return 0; }
  done
  if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
    dirname "$(readlink -f "$(command -v initdb)")"; return 0
  fi
  return 1
}

# run a command as the server's owner (root cannot run PostgreSQL)
as_owner() {
  if [ "$(id -u)" -eq 0 ]; then
    runuser -u "$OWNER" -- "$@"
  else
    "$@"
  fi
}

stop() {
  local dir=${1:-${FORECASTER_PG_DIR:-}}
  [ -n "$dir" ] && [ -d "$dir" ] || { say "nothing to stop (FORECASTER_PG_DIR not set or gone)"; return 0; }
  local bin owner
  bin=$(cat "$dir/bin" 2>/dev/null || find_bin || true)
  owner=$(stat -c %U "$dir")
  if [ -n "$bin" ] && [ -f "$dir/data/postmaster.pid" ]; then
    if [ "$(id -u)" -eq 0 ]; then
      runuser -u "$owner" -- "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    else
      "$bin/pg_ctl" -D "$dir/data" -m fast -w stop >/dev/null 2>&1 || true
    fi
  fi
  case "$dir" in /tmp/forecaster-pg.*|"${TMPDIR:-/tmp}"/forecaster-pg.*) rm -rf "$dir" ;; *) say "left $dir (not a folder of ours)" ;; esac
  say "stopped and removed $dir"
}

start() {
  local bin
  if ! bin=$(find_bin); then
    say "installing Debian's postgresql (initdb/pg_ctl not found)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq postgresql >/dev/null) \
      || { say "could not install postgresql"; exit 1; }
    bin=$(find_bin) || { say "postgresql installed but initdb/pg_ctl not found"; exit 1; }
  fi
  OWNER=$(id -un)
  if [ "$(id -u)" -eq 0 ]; then
    OWNER=postgres
    id -u "$OWNER" >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin "$OWNER"
  fi
  DIR=$(mktemp -d "${TMPDIR:-/tmp}/forecaster-pg.XXXXXX")
  trap 'status=$?; if [ $status -ne 0 ]; then [ -f "$DIR/log" ] && cat "$DIR/log" >&2; stop "$DIR"; fi' EXIT
  echo "$bin" > "$DIR/bin"
  chown "$OWNER" "$DIR"
  chmod 700 "$DIR"
  local port password url
  port=$("$PYTHON" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  password=$(LC_ALL=C tr -dc 'A-Za-z0-9' </dev/urandom | head -c 24 || true)
  say "cluster in $DIR/data (owner $OWNER, $bin), port $port"
  as_owner "$bin/initdb" -D "$DIR/data" -U admin --auth-local=trust --auth-host=scram-sha-256 \
    -E UTF8 --locale=C >/dev/null
  as_owner "$bin/pg_ctl" -D "$DIR/data" -l "$DIR/log" -w -t 60 \
    -o "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$DIR -c fsync=off" start >/dev/null
  "$PYTHON" tests/history/history_tables.py csv "$DIR/deals.csv" "$ROWS" "$SEED"
  chmod 644 "$DIR/deals.csv"
  local psql=(as_owner "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$DIR" -p "$port" -U admin)
  "${psql[@]}" -d postgres -c "CREATE ROLE forecaster LOGIN PASSWORD '$password'" \
    -c "CREATE DATABASE forecaster_test"
  "${psql[@]}" -d forecaster_test \
    -c 'CREATE TABLE deals ("Id" text PRIMARY KEY, "Name" text, "StageName" text, "CreatedDate" date,
                            "CloseDate" date, "Amount" numeric(14, 2), "Segment" text)' \
    -c "\\copy deals FROM '$DIR/deals.csv' WITH (FORMAT csv, HEADER true)" \
    -c 'GRANT SELECT ON deals TO forecaster'
  local n
  n=$("${psql[@]}" -d forecaster_test -At -c 'SELECT count(*) FROM deals')
  [ "$n" = "$ROWS" ] || { say "seeded $n rows, expected $ROWS"; exit 1; }
  url="postgresql://forecaster:$password@127.0.0.1:$port/forecaster_test"
  say "seeded deals with $n rows; the user forecaster may only read it"
  trap - EXIT
  printf 'export FORECASTER_PG_URL=%q\n' "$url"
  printf 'export FORECASTER_PG_DIR=%q\n' "$DIR"
  printf 'export FORECASTER_PG_ROWS=%q FORECASTER_PG_SEED=%q\n' "$ROWS" "$SEED"
}

case "${1:-}" in
  start) start ;;
  stop) stop "${2:-}" ;;
  *) echo "usage: $0 start | stop [DIR]" >&2; exit 2 ;;
esac
