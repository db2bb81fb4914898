# Shared parts of the side-by-side benchmarks. Sourced, not run.
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_PORT=${DRIFTDB_BENCH_PORT:-5499}
BENCH_BIN=$("$PG15_CONFIG" --bindir)

# bench_cluster NAME: a fresh release-built PG15 cluster with DriftDB, removed on exit.
bench_cluster() {
  BENCH_DATA="$DRIFTDB_RUN/bench-$1"
  pg_lock
  bash "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh"
  install_driftdb "$PG15_CONFIG" --release
  cluster_stop "$BENCH_BIN" "$BENCH_DATA" 2>/dev/null || true
  as_root rm -rf "$BENCH_DATA"
  cluster_init "$BENCH_BIN" "$BENCH_DATA" "$BENCH_PORT"
  cluster_start "$BENCH_BIN" "$BENCH_DATA"
  trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA"' EXIT
}

psql_b() {
  "$BENCH_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres \
    -d postgres "$@"
}

median() {
  tr ' ' '\n' | grep -v '^$' | sort -g \
    | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

# rounds SECONDS ROUNDS NAME=SCRIPT... : runs each pgbench script (1 client, prepared) for
# SECONDS, alternating them, ROUNDS times; sets TPS[NAME] to the median and ALL[NAME] to
# every round's figure. PGOPTIONS reaches the sessions (e.g. -c driftdb.as_of=...).
declare -A TPS ALL
rounds() {
  local secs=$1 n=$2; shift 2
  local r pair name file v
  for r in $(seq 1 "$n"); do
    for pair in "$@"; do
      name=${pair%%=*}; file=${pair#*=}
      v=$("$BENCH_BIN/pgbench" -n -M prepared -c 1 -T "$secs" -h 127.0.0.1 -p "$BENCH_PORT" \
          -U postgres -f "$file" postgres 2>/dev/null | awk '/^tps/ {print $3; exit}')
      [ -n "$v" ] || die "pgbench failed for $name"
      say "round $r $name: $v tps"
      ALL[$name]="${ALL[$name]:-} $v"
    done
  done
  for pair in "$@"; do
    name=${pair%%=*}
    TPS[$name]=$(echo "${ALL[$name]}" | median)
  done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'; }
