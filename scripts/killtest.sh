#!/usr/bin/env bash
# `make kill-test`: the long kill -9 run. `make test` runs the same test with 20 cycles;
# this runs DRIFTDB_KILL_CYCLES (default 200) on each Postgres version here.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$here/.."

pg_lock
bash "$here/setup.sh"
for v in ${DRIFTDB_TEST_VERSIONS:-$DRIFTDB_VERSIONS}; do
  pgc=$(pg_config_for "$v")
  install_driftdb "$pgc" 9>&-
  say "kill -9 test on PostgreSQL $v: ${DRIFTDB_KILL_CYCLES:-200} cycles"
  DRIFTDB_KILL_CYCLES=${DRIFTDB_KILL_CYCLES:-200} DRIFTDB_PG_BINDIR=$("$pgc" --bindir) \
    DRIFTDB_RUN="$DRIFTDB_RUN" cargo test -p driftdb-e2e --test durability kill_9 -- --nocapture 9>&-
done
