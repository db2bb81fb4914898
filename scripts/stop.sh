#!/usr/bin/env bash
# `make stop`: stops the cluster that `make run` started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
if [ ! -x "$PG15_CONFIG" ]; then say "PostgreSQL 15 is not installed: nothing to stop"; exit 0; fi
cluster_stop "$("$PG15_CONFIG" --bindir)" "$DRIFTDB_RUN/demo-15"
say "stopped"
