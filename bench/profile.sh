#!/usr/bin/env bash
# Where DriftDB's time goes in the workloads of `make bench`: the DriftDB table of
# bench/run.sh with the same data and history (BENCH_ROWS rows, BENCH_UPDATES full-table
# updates, a snapshot after the load and after the churn), then each workload on it alone
# under `perf record` of its backends (cpu-clock samples, DWARF call graphs). For each
# workload, target/bench/profile-<workload>.txt gets the backends' CPU use (CPU seconds /
# wall seconds: well below 1 per client means waiting, not computing), the top functions by
# own time and by time with callees, and for the small transactions the backends'
# syscalls (perf trace -s, a second run). The recordings stay in target/bench/perf-<workload>.data
# for `perf report -i` (e.g. `-S <function> -G` for its callers).
# Usage: bench/profile.sh [workload...]
#   workloads: ingest churn insert update scan point past_point past_full history cold
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
cd "$here/.."

ROWS=${BENCH_ROWS:-200000}
UPDATES=${BENCH_UPDATES:-3}
CLIENTS=${BENCH_CLIENTS:-4}
SECS=${BENCH_PROFILE_SECONDS:-6}
COLD_EVENTS=${BENCH_COLD_EVENTS:-1000000}
ALL_WORKLOADS=(ingest churn insert update scan point past_point past_full history cold)
if [ $# -gt 0 ]; then WORKLOADS=("$@"); else WORKLOADS=("${ALL_WORKLOADS[@]}"); fi
for w in "${WORKLOADS[@]}"; do
  [[ " ${ALL_WORKLOADS[*]} " == *" $w "* ]] || die "unknown workload $w (${ALL_WORKLOADS[*]})"
done
wants() { [[ " ${WORKLOADS[*]} " == *" $1 "* ]]; }
perf stat -e cpu-clock true >/dev/null 2>&1 || die "perf does not work here"

out=$PWD/target/bench
mkdir -p "$out"
work=$(mktemp -d)
bench_cluster profile
trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA" "$work"' EXIT
q() { psql_b -tAc "$1"; }

# cpu_seconds PID[,PID...]: user + system CPU seconds of those processes so far.
cpu_seconds() {
  local p tick
  tick=$(getconf CLK_TCK)
  for p in ${1//,/ }; do cat "/proc/$p/stat" 2>/dev/null || true; done \
    | awk -v t="$tick" '{s += $14 + $15} END {printf "%.2f", s / t}'
}

# recorded NAME WALL CPU BACKENDS: notes what a profile covered; summarize writes its report
# (after the cluster is gone: perf report's DWARF unwinding takes a while).
recorded() { echo "# $1: $4 backend(s), $2 s of wall time, $3 s of CPU" >"$work/$1.head"; }
summarize() {
  local name=$1 f="$out/profile-$1.txt"
  {
    cat "$work/$name.head"
    [ ! -f "$work/$name.pgbench" ] \
      || grep -E '^(tps|number of (failed|transactions retried))' "$work/$name.pgbench"
    echo
    echo "## own time (self), top functions"
    perf report -i "$work/$name.data" --no-children --sort symbol --stdio -g none \
      --percent-limit 1 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/ *- *- *$//' | head -25
    echo
    echo "## with callees (children), DriftDB and Postgres entry points above 3%"
    perf report -i "$work/$name.data" --children --sort symbol --stdio -g none \
      --percent-limit 3 2>/dev/null | grep -v '^#' | grep -v '^$' | sed 's/ *- *- *$//' \
      | grep -E 'driftdb|Executor|Commit|exec_|Exec|heap_|ZSTD|malloc|free|fdatasync|write' | head -40
    [ ! -f "$work/$name.trace" ] || {
      echo
      echo "## syscalls of the backends over ${SECS} s (perf trace -s, a second run: $(grep '^tps' "$work/$name.pgbench2"))"
      awk '$2 ~ /^[0-9]+$/ && $4 ~ /^[0-9.]+$/ {c[$1] += $2; t[$1] += $4}
           END {for (s in c) printf "%-16s %8d calls %10.1f ms\n", s, c[s], t[s]}' "$work/$name.trace" \
        | sort -k4 -gr | head -12
    }
  } >"$f"
  say "$f"
  sed -n '1,14p' "$f" >&2
}

# prof_sql NAME SQL: SQL in a new session, profiled (the session waits a second before it
# and half a second after it, so that perf is attached and its CPU time can be read).
prof_sql() {
  local name=$1 sql=$2 pid perf_pid c c0 c1
  printf 'SET application_name = %s;\nSELECT pg_sleep(1);\n\\timing on\n%s;\n\\timing off\nSELECT pg_sleep(0.5);\n' \
    "'prof_$name'" "$sql" | psql_b >"$work/$name.psql" &
  local psql_pid=$!
  for _ in $(seq 1 50); do
    pid=$(q "SELECT pid FROM pg_stat_activity WHERE application_name = 'prof_$name'")
    [ -n "$pid" ] && break
    sleep 0.05
  done
  [ -n "$pid" ] || die "no session for $name"
  perf record -e cpu-clock -F 499 --call-graph dwarf,16384 -p "$pid" -o "$work/$name.data" \
    >/dev/null 2>&1 &
  perf_pid=$!
  c0=$(cpu_seconds "$pid")
  c1=$c0
  while kill -0 "$psql_pid" 2>/dev/null; do
    c=$(cpu_seconds "$pid"); [ "$c" = 0.00 ] || c1=$c
    sleep 0.1
  done
  wait "$psql_pid" || die "$name failed"
  kill -INT "$perf_pid" 2>/dev/null || true
  wait "$perf_pid" || true
  recorded "$name" "$(awk '/^Time: / {printf "%.2f", $2 / 1000}' "$work/$name.psql")" \
    "$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')" 1
}

# prof_pgbench NAME CLIENTS SCRIPT [PGOPTIONS]: pgbench for SECS + 4 s, its backends
# profiled for SECS s once connected; with TRACE=1 a second run's syscalls too.
prof_pgbench() {
  local name=$1 clients=$2 file=$3 opts=${4:-} pids c0 c1
  PGOPTIONS="$opts" "$BENCH_BIN/pgbench" -n -M prepared -c "$clients" -T $((SECS + 4)) \
    --max-tries=10 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -f "$file" postgres \
    >"$work/$name.pgbench" 2>&1 &
  local bench_pid=$!
  sleep 1
  pids=$(q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench'")
  [ -n "$pids" ] || die "no pgbench sessions for $name"
  c0=$(cpu_seconds "$pids")
  perf record -e cpu-clock -F 249 --call-graph dwarf,16384 -p "$pids" -o "$work/$name.data" \
    -- sleep "$SECS" >/dev/null 2>&1 &
  local perf_pid=$!
  sleep "$SECS"
  c1=$(cpu_seconds "$pids")
  wait "$perf_pid" || true
  wait "$bench_pid" || { cat "$work/$name.pgbench" >&2; die "pgbench failed for $name"; }
  recorded "$name" "$SECS" "$(awk -v a="$c0" -v b="$c1" 'BEGIN {printf "%.2f", b - a}')" "$clients"
  if [ "${TRACE:-0}" = 1 ]; then
    PGOPTIONS="$opts" "$BENCH_BIN/pgbench" -n -M prepared -c "$clients" -T $((SECS + 4)) \
      --max-tries=10 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres -f "$file" postgres \
      >"$work/$name.pgbench2" 2>&1 &
    bench_pid=$!
    sleep 1
    pids=$(q "SELECT string_agg(pid::text, ',') FROM pg_stat_activity WHERE application_name = 'pgbench'")
    perf trace -s -p "$pids" -o "$work/$name.trace" -- sleep "$SECS" >/dev/null 2>&1 || true
    wait "$bench_pid" || true
  fi
}

psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION driftdb" >/dev/null
psql_b -c "CREATE FOREIGN TABLE drift_t (id int NOT NULL, name text, n int) SERVER drift OPTIONS (primary_key 'id')"
ingest="INSERT INTO drift_t (id, name, n) SELECT g, 'name ' || g, 0 FROM generate_series(1, $ROWS) g"
if wants ingest; then prof_sql ingest "$ingest"; else psql_b -c "$ingest"; fi
psql_b -c "SELECT drift_snapshot('drift_t')" -c "ANALYZE drift_t" >/dev/null
# The history (UPDATES full-table updates) only when a workload reads or changes it.
history_wanted=0
for w in churn scan point past_point past_full history update; do
  if wants "$w"; then history_wanted=1; fi
done
if [ "$history_wanted" = 1 ]; then
  update="UPDATE drift_t SET n = n + 1"
  if wants churn; then prof_sql churn "$update"; else psql_b -c "$update"; fi
  past=$(q "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
  for _ in $(seq 2 "$UPDATES"); do psql_b -c "$update"; done
  psql_b -c "SELECT drift_snapshot('drift_t')" -c "ANALYZE drift_t" >/dev/null
fi

script() { local name=$1; shift; printf '%s\n' "$@" >"$work/$name.sql"; echo "$work/$name.sql"; }
if wants scan; then prof_pgbench scan 1 "$(script scan "SELECT count(*), sum(n) FROM drift_t;")"; fi
if wants point; then
  prof_pgbench point 1 "$(script point "\\set id random(1, $ROWS)" "SELECT name, n FROM drift_t WHERE id = :id;")"
fi
if wants past_point; then
  prof_pgbench past_point 1 "$(script past_point "\\set id random(1, $ROWS)" "SELECT name, n FROM drift_t WHERE id = :id;")" \
    "-c driftdb.as_of=$past"
fi
if wants past_full; then
  prof_pgbench past_full 1 "$(script past_full "SELECT count(*), sum(n) FROM drift_as_of(NULL::drift_t, '$past'::timestamptz);")"
fi
if wants history; then
  prof_pgbench history 1 "$(script history "\\set id random(1, $ROWS)" "SELECT seq, op, \"row\" FROM drift_history('drift_t') WHERE \"row\"->>'id' = :id::text;")"
fi
if wants insert; then
  psql_b -c "CREATE SEQUENCE drift_ins_id" \
    -c "CREATE FOREIGN TABLE drift_ins (id int NOT NULL DEFAULT nextval('drift_ins_id'), name text, n int) SERVER drift OPTIONS (primary_key 'id')"
  TRACE=1 prof_pgbench insert "$CLIENTS" "$(script insert "\\set n random(1, 1000)" "INSERT INTO drift_ins (name, n) VALUES ('name', :n);")"
fi
if wants update; then
  TRACE=1 prof_pgbench update "$CLIENTS" "$(script update "\\set id random(1, $ROWS)" "UPDATE drift_t SET n = n + 1 WHERE id = :id;")"
fi
if wants cold; then
  cold_rows=$((COLD_EVENTS / 10))
  say "cold: building $COLD_EVENTS events of history"
  psql_b -c "DROP FOREIGN TABLE IF EXISTS drift_ins" -c "DROP FOREIGN TABLE drift_t" \
    -c "CREATE FOREIGN TABLE drift_cold (id int NOT NULL, name text, n int) SERVER drift OPTIONS (primary_key 'id')" \
    -c "INSERT INTO drift_cold SELECT g, 'name ' || g, 0 FROM generate_series(1, $cold_rows) g"
  for _ in $(seq 2 10); do psql_b -c "UPDATE drift_cold SET n = n + 1"; done
  bench_restart
  prof_sql cold "SELECT count(*) FROM drift_cold"
  psql_b -c "SELECT drift_snapshot('drift_cold')" >/dev/null
  bench_restart
  prof_sql cold_snap "SELECT count(*) FROM drift_cold"
fi

cluster_stop "$BENCH_BIN" "$BENCH_DATA"
pg_unlock
for f in "$work"/*.head; do
  name=$(basename "$f" .head)
  summarize "$name"
  mv "$work/$name.data" "$out/perf-$name.data"
done
