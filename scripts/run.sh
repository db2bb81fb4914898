#!/usr/bin/env bash
# `make run`: set up, build, start a local Postgres 15 with DriftDB and a demo database,
# then open psql (or print how to connect when there is no terminal).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$here/.."

DEMO_PORT=${DRIFTDB_DEMO_PORT:-5455}
DEMO_DATA="$DRIFTDB_RUN/demo-15"
DEMO_DB=drift_demo

pg_lock
# Only what the demo needs: PostgreSQL 15 (from Debian) and cargo-pgrx.
bash "$here/setup.sh" --versions 15 --no-fuzz
# Known only once setup has installed PostgreSQL (a fresh machine has none before).
BIN15=$("$PG15_CONFIG" --bindir)
install_driftdb "$PG15_CONFIG" --release
# Restart a running demo server so that it loads the new build.
cluster_stop "$BIN15" "$DEMO_DATA"
say "starting PostgreSQL 15 on 127.0.0.1:$DEMO_PORT (data in $DEMO_DATA)"
cluster_init "$BIN15" "$DEMO_DATA" "$DEMO_PORT"
cluster_start "$BIN15" "$DEMO_DATA"

psql_demo() { "$BIN15/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$DEMO_PORT" -U postgres "$@"; }
# The demo database is rebuilt when the installed extension script or the demo data changed
# (a new build may add functions); otherwise it is reused as it is.
# (The generated script's statements come in no fixed order, so its lines are sorted.)
stamp=$( (sort "$("$PG15_CONFIG" --sharedir)"/extension/driftdb--*.sql; cat sql/demo.sql) \
  | md5sum | cut -d' ' -f1)
if [ "$(as_root cat "$DEMO_DATA/driftdb-demo.stamp" 2>/dev/null)" != "$stamp" ]; then
  say "creating database $DEMO_DB with the demo data"
  psql_demo -d postgres -c "DROP DATABASE IF EXISTS $DEMO_DB"
  psql_demo -d postgres -c "CREATE DATABASE $DEMO_DB"
  psql_demo -d "$DEMO_DB" -f sql/demo.sql >/dev/null
  echo "$stamp" | as_root tee "$DEMO_DATA/driftdb-demo.stamp" >/dev/null
fi

pg_unlock
say "ready after ${SECONDS}s (the first run on a fresh machine installs and builds everything first)"
connect="psql -h 127.0.0.1 -p $DEMO_PORT -U postgres $DEMO_DB"
if [ -t 0 ] && [ -t 1 ]; then
  say "connected; \\q leaves psql, 'make stop' stops the server"
  exec "$BIN15/psql" -h 127.0.0.1 -p "$DEMO_PORT" -U postgres "$DEMO_DB"
else
  echo "DriftDB is running. Connect with:"
  echo "  $connect"
  echo "Stop it with: make stop"
fi
