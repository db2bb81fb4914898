#!/usr/bin/env bash
# `make bench`: DriftDB side by side with a heap table (primary key) and a heap table with
# the periods extension's system versioning (history table and triggers), on one
# release-built PostgreSQL 15: the same data and the same queries for the three, each
# workload interleaved round by round (the order rotates), medians and ratios printed as
# markdown and written into docs/benchmarks.md with the machine's description.
#
# Sizes are environment variables (defaults in brackets):
#   BENCH_ROWS [200000]          rows of the main tables
#   BENCH_UPDATES [3]            full-table updates of the update churn
#   BENCH_ROUNDS [3]             rounds of every workload (medians are over them)
#   BENCH_SECONDS [3]            seconds of each pgbench run
#   BENCH_CLIENTS [4]            pgbench clients of the small-transaction workloads
#   BENCH_COLD_EVENTS [1000000]  events of history of the cold-start table (0: skip it)
#   BENCH_DOC [docs/benchmarks.md]  where the results go (empty: print only)
# pgbench's own output is kept in target/bench/pgbench.log.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
cd "$here/.."

ROWS=${BENCH_ROWS:-200000}
UPDATES=${BENCH_UPDATES:-3}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-3}
CLIENTS=${BENCH_CLIENTS:-4}
COLD_EVENTS=${BENCH_COLD_EVENTS:-1000000}
COLD_VERSIONS=10 # the cold table: COLD_EVENTS/10 rows, inserted then updated 9 times
DOC=${BENCH_DOC-docs/benchmarks.md}
for v in ROWS UPDATES ROUNDS SECS CLIENTS COLD_EVENTS; do
  [[ ${!v} =~ ^[0-9]+$ ]] || die "$v must be a whole number, not '${!v}'"
done
[ "$ROWS" -ge 100 ] && [ "$UPDATES" -ge 2 ] && [ "$ROUNDS" -ge 1 ] && [ "$SECS" -ge 1 ] \
  || die "need BENCH_ROWS >= 100, BENCH_UPDATES >= 2, BENCH_ROUNDS >= 1, BENCH_SECONDS >= 1"

invoked=$(date +%s)
mkdir -p target/bench
BENCH_LOG=$PWD/target/bench/pgbench.log
: >"$BENCH_LOG"
work=$(mktemp -d)

bench_cluster make
# The time the benchmark took, from here: not the build nor the wait for the lock.
started=$(date +%s)
prepared=$((started - invoked))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA" "$work"' EXIT

# The three variants, in the order of the result table; a variant's table is <variant>_t.
VARIANTS=(drift heap per)
declare -A TABLE=([drift]=drift_t [heap]=heap_t [per]=per_t)

q() { psql_b -tAc "$1"; }
# add KEY VALUE: one more measurement of KEY (ms, tps or bytes).
add() { ALL[$1]="${ALL[$1]:-} $2"; }
# sum_into KEY VALUE: adds VALUE to the last measurement of KEY (several statements of one round).
declare -A ACC
acc() { ACC[$1]=$(awk -v a="${ACC[$1]:-0}" -v b="$2" 'BEGIN {print a + b}'); }
flush() { local k; for k in "${!ACC[@]}"; do add "$k" "${ACC[$k]}"; done; ACC=(); }
med() { if [ -n "${ALL[$1]:-}" ]; then echo "${ALL[$1]}" | median; fi; }

psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION driftdb" \
  -c "CREATE EXTENSION periods CASCADE"
db_oid=$(q "SELECT oid FROM pg_database WHERE datname = current_database()")

# drift_dir TABLE: the table's directory relative to $PGDATA.
drift_dir() { echo "driftdb/tables/$(( (db_oid << 32) | $(q "SELECT '$1'::regclass::oid") ))"; }
# drift_bytes DIR [KIND]: bytes of the files in DIR (KIND: log, snapshots, other).
drift_bytes() {
  q "SELECT coalesce(sum((pg_stat_file('$1/' || f)).size), 0) FROM pg_ls_dir('$1') f
     WHERE '${2:-}' = '' OR '${2:-}' = CASE WHEN f LIKE '%.log' THEN 'log'
       WHEN f LIKE 'snap-%' THEN 'snapshots' ELSE 'other' END"
}

# --- 6. cold start ----------------------------------------------------------------------
# First, while the store holds nothing else: a table with COLD_EVENTS events of history
# (every row inserted, then updated COLD_VERSIONS-1 times) and a heap table given the same
# statements. After each restart: the first count(*) and the first point lookup, each in a
# new session, then count(*) in one more new session (not the first after the restart).
# Measured without a snapshot (a new session replays the history) and after drift_snapshot.
# The worker's snapshot policies are off until then (they would snapshot the table while
# it is built), and the table is checked to have no snapshot.
# snapshot_policies off|on: the worker's policies (driftdb.snapshot_events and _bytes),
# set for the server and taken up by a restart.
snapshot_policies() {
  local p
  for p in driftdb.snapshot_events driftdb.snapshot_bytes; do
    if [ "$1" = off ]; then q "ALTER SYSTEM SET $p = 0" >/dev/null; else q "ALTER SYSTEM RESET $p" >/dev/null; fi
  done
  bench_restart
}
cold_rows=$((COLD_EVENTS / COLD_VERSIONS))
if [ "$cold_rows" -gt 0 ]; then
  snapshot_policies off
  say "cold start: building $COLD_EVENTS events of history ($cold_rows rows x $COLD_VERSIONS versions)"
  psql_b >/dev/null <<SQL
CREATE FOREIGN TABLE drift_cold (id int NOT NULL, name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE heap_cold (id int PRIMARY KEY, name text, n int);
SQL
  for t in drift_cold heap_cold; do
    v=${t%_cold}
    acc "cold_build_$v" "$(sql_ms "INSERT INTO $t SELECT g, 'name ' || g, 0 FROM generate_series(1, $cold_rows) g")"
    for _ in $(seq 2 "$COLD_VERSIONS"); do
      acc "cold_build_$v" "$(sql_ms "UPDATE $t SET n = n + 1")"
    done
  done
  flush
  psql_b -c "VACUUM ANALYZE heap_cold" -c "ANALYZE drift_cold"
  cold_check="$cold_rows/$((cold_rows * (COLD_VERSIONS - 1)))"
  for t in drift_cold heap_cold; do
    got=$(q "SELECT count(*) || '/' || sum(n) FROM $t")
    [ "$got" = "$cold_check" ] || die "$t holds $got, not $cold_check"
  done
  COLD_LOG_BYTES=$(drift_bytes "$(drift_dir drift_cold)" log)
  for state in nosnap snap; do
    if [ "$state" = snap ]; then
      add cold_snapshot_drift "$(sql_ms "SELECT drift_snapshot('drift_cold')")"
    else
      snap_bytes=$(drift_bytes "$(drift_dir drift_cold)" snapshots)
      [ "$snap_bytes" = 0 ] || die "drift_cold has $snap_bytes bytes of snapshots before drift_snapshot"
    fi
    for r in $(seq 1 "$ROUNDS"); do
      bench_restart
      mapfile -t order < <(rotate "$((r - 1))" drift heap)
      for v in "${order[@]}"; do
        add "cold_count_${state}_$v" "$(sql_ms "SELECT count(*) FROM ${v}_cold")"
      done
      id=$((RANDOM % cold_rows + 1))
      for v in "${order[@]}"; do
        add "cold_point_${state}_$v" "$(sql_ms "SELECT name, n FROM ${v}_cold WHERE id = $id")"
      done
      for v in "${order[@]}"; do
        add "cold_again_${state}_$v" "$(sql_ms "SELECT count(*) FROM ${v}_cold")"
      done
      say "cold round $r ($state): count drift $(echo "${ALL[cold_count_${state}_drift]}" | awk '{print $NF}') ms, heap $(echo "${ALL[cold_count_${state}_heap]}" | awk '{print $NF}') ms"
    done
  done
  psql_b -c "DROP FOREIGN TABLE drift_cold" -c "DROP TABLE heap_cold"
  snapshot_policies on
fi

# --- 1, 2. ingest and update churn ------------------------------------------------------
# Each round starts from empty tables: one INSERT ... SELECT of ROWS rows, then maintenance
# (drift_snapshot; VACUUM ANALYZE), then UPDATES full-table updates, each statement run
# for the three tables in turn. The point "in the middle of the history" is noted after
# the first update; the tables of the last round stay for the reads.
make_tables() {
  psql_b >/dev/null <<SQL
SET client_min_messages = warning;
DROP FOREIGN TABLE IF EXISTS drift_t;
DROP TABLE IF EXISTS heap_t;
DO \$\$ BEGIN
  IF to_regclass('per_t') IS NOT NULL THEN
    PERFORM periods.drop_system_versioning('per_t', purge => true);
    PERFORM periods.drop_period('per_t', 'system_time', purge => true);
    DROP TABLE per_t;
  END IF;
END \$\$;
CREATE FOREIGN TABLE drift_t (id int NOT NULL, name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE heap_t (id int PRIMARY KEY, name text, n int);
CREATE TABLE per_t (id int PRIMARY KEY, name text, n int);
SELECT periods.add_system_time_period('per_t');
SELECT periods.add_system_versioning('per_t');
SQL
}
# maintain PHASE: what each variant does after bulk changes, timed (not part of the
# workloads' figures): DriftDB writes a snapshot and ANALYZEs, heap tables VACUUM ANALYZE.
maintain() {
  acc "maint_$1_drift" "$(sql_ms "SELECT drift_snapshot('drift_t')")"
  acc "maint_$1_drift" "$(sql_ms "ANALYZE drift_t")"
  acc "maint_$1_heap" "$(sql_ms "VACUUM ANALYZE heap_t")"
  acc "maint_$1_per" "$(sql_ms "VACUUM ANALYZE per_t")"
  acc "maint_$1_per" "$(sql_ms "VACUUM ANALYZE per_t_history")"
  flush
}

for r in $(seq 1 "$ROUNDS"); do
  make_tables
  mapfile -t order < <(rotate "$((r - 1))" "${VARIANTS[@]}")
  for v in "${order[@]}"; do
    add "ingest_$v" "$(sql_ms "INSERT INTO ${TABLE[$v]} (id, name, n) SELECT g, 'name ' || g, 0 FROM generate_series(1, $ROWS) g")"
  done
  maintain load
  for u in $(seq 1 "$UPDATES"); do
    for v in "${order[@]}"; do
      acc "churn_$v" "$(sql_ms "UPDATE ${TABLE[$v]} SET n = n + 1")"
    done
    if [ "$u" = 1 ]; then
      sleep 0.01
      past=$(q "SELECT to_char(clock_timestamp() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"')")
      sleep 0.01
    fi
  done
  flush
  maintain churn
  say "round $r: ingest ms$(for v in "${VARIANTS[@]}"; do printf ' %s %s' "$v" "$(echo "${ALL[ingest_$v]}" | awk '{print $NF}')"; done);" \
      "churn ms$(for v in "${VARIANTS[@]}"; do printf ' %s %s' "$v" "$(echo "${ALL[churn_$v]}" | awk '{print $NF}')"; done)"
done
past_seq=$(q "SELECT drift_seq_at('$past')")
churn_seq=$(q "SELECT drift_current_seq()")

# The three must hold the same now, and DriftDB and periods the same past.
now_check="$ROWS/$((ROWS * UPDATES))"
for v in "${VARIANTS[@]}"; do
  got=$(q "SELECT count(*) || '/' || sum(n) FROM ${TABLE[$v]}")
  [ "$got" = "$now_check" ] || die "${TABLE[$v]} holds $got, not $now_check"
done
p=$(q "SELECT count(*) || '/' || sum(n) FROM per_t__as_of('$past')")
d=$(q "SELECT count(*) || '/' || sum(n) FROM drift_as_of(NULL::drift_t, '$past'::timestamptz)")
[ "$p" = "$ROWS/$ROWS" ] && [ "$d" = "$ROWS/$ROWS" ] || die "the past differs: periods $p, DriftDB $d (want $ROWS/$ROWS)"
q "EXPLAIN SELECT * FROM drift_t WHERE id = 1" | grep -q "primary key lookup" \
  || die "DriftDB does not plan a primary key lookup"
PGOPTIONS="-c driftdb.as_of=$past" q "EXPLAIN SELECT * FROM drift_t WHERE id = 1" \
  | grep -q "primary key lookup" || die "DriftDB does not plan a key lookup in the past"
h=$(q "SELECT count(*) FROM drift_history('drift_t') WHERE \"row\"->>'id' = '42'")
p=$(q "SELECT count(*) FROM per_t_with_history WHERE id = 42")
[ "$h" = $((UPDATES + 1)) ] && [ "$p" = $((UPDATES + 1)) ] \
  || die "history of one row: DriftDB $h events, periods $p versions (want $((UPDATES + 1)))"

# --- 5. storage -------------------------------------------------------------------------
dir=$(drift_dir drift_t)
add bytes_drift "$(drift_bytes "$dir")"
add bytes_heap "$(q "SELECT pg_total_relation_size('heap_t')")"
add bytes_per "$(q "SELECT pg_total_relation_size('per_t') + pg_total_relation_size('per_t_history')")"
DRIFT_LOG_BYTES=$(drift_bytes "$dir" log)
DRIFT_SNAP_BYTES=$(drift_bytes "$dir" snapshots)
DRIFT_SNAP_FILES=$(q "SELECT count(*) FROM pg_ls_dir('$dir') f WHERE f LIKE 'snap-%'")
PER_MAIN_BYTES=$(q "SELECT pg_total_relation_size('per_t')")
JOURNAL_BYTES=$(drift_bytes driftdb/journal)

# --- 3, 4. reads: the present and the past ----------------------------------------------
script() { # script NAME SQL...: a pgbench script file
  local name=$1; shift
  printf '%s\n' "$@" >"$work/$name.sql"
  echo "$name=$work/$name.sql"
}
say "reads: $ROUNDS rounds of ${SECS}s per query and table, 1 client"
PGB_CLIENTS=1
PGB_OPTS=()
reads=()
for v in "${VARIANTS[@]}"; do
  reads+=("$(script "scan_$v" "SELECT count(*), sum(n) FROM ${TABLE[$v]};")")
  reads+=("$(script "point_$v" "\\set id random(1, $ROWS)" "SELECT name, n FROM ${TABLE[$v]} WHERE id = :id;")")
done
rounds "$SECS" "$ROUNDS" "${reads[@]}"

# DriftDB reads the past with the session setting (key lookups are pushed down under it)
# and with drift_as_of(); periods with its <table>__as_of(timestamptz) function.
SESSION[past_point_drift]="-c driftdb.as_of=$past"
rounds "$SECS" "$ROUNDS" \
  "$(script past_point_drift "\\set id random(1, $ROWS)" "SELECT name, n FROM drift_t WHERE id = :id;")" \
  "$(script past_point_per "\\set id random(1, $ROWS)" "SELECT name, n FROM per_t__as_of('$past') WHERE id = :id;")" \
  "$(script past_full_drift "SELECT count(*), sum(n) FROM drift_as_of(NULL::drift_t, '$past'::timestamptz);")" \
  "$(script past_full_per "SELECT count(*), sum(n) FROM per_t__as_of('$past');")" \
  "$(script history_drift "\\set id random(1, $ROWS)" "SELECT seq, op, \"row\" FROM drift_history('drift_t') WHERE \"row\"->>'id' = :id::text;")" \
  "$(script history_per "\\set id random(1, $ROWS)" "SELECT * FROM per_t_with_history WHERE id = :id;")"

# periods creates its history table without indexes (and says to "index it properly");
# with one on the key its past point lookups and one row's history use it. Informational,
# against DriftDB again.
psql_b -c "CREATE INDEX per_t_history_id ON per_t_history (id)" -c "ANALYZE per_t_history"
SESSION[idx_past_point_drift]=${SESSION[past_point_drift]}
rounds "$SECS" "$ROUNDS" \
  "idx_past_point_drift=$work/past_point_drift.sql" "idx_past_point_per=$work/past_point_per.sql" \
  "idx_history_drift=$work/history_drift.sql" "idx_history_per=$work/history_per.sql"
psql_b -c "DROP INDEX per_t_history_id"

# --- 1, 2. small transactions -----------------------------------------------------------
# CLIENTS clients, one statement per transaction: inserts into fresh tables (keys from a
# sequence) and updates of random keys of the main tables, each client on its own keys
# (id = client + 1 + CLIENTS * k). Clients never change one row at once: DriftDB's later
# committer would get 40001, periods' "invalid row version" (which pgbench does not
# retry) and heap would wait. pgbench still retries 40001 (--max-tries) and the report
# counts what failed.
say "small transactions: $ROUNDS rounds of ${SECS}s per table, $CLIENTS clients"
psql_b >/dev/null <<SQL
SET client_min_messages = warning;
CREATE SEQUENCE drift_ins_id;
CREATE FOREIGN TABLE drift_ins (id int NOT NULL DEFAULT nextval('drift_ins_id'), name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE heap_ins (id serial PRIMARY KEY, name text, n int);
CREATE TABLE per_ins (id serial PRIMARY KEY, name text, n int);
SELECT periods.add_system_time_period('per_ins');
SELECT periods.add_system_versioning('per_ins');
SQL
PGB_CLIENTS=$CLIENTS
PGB_OPTS=(--max-tries=10)
writes=()
for v in "${VARIANTS[@]}"; do
  writes+=("$(script "insert_$v" "\\set n random(1, 1000)" "INSERT INTO ${v}_ins (name, n) VALUES ('name', :n);")")
  writes+=("$(script "update_$v" "\\set id 1 + :client_id + $CLIENTS * random(0, $((ROWS / CLIENTS - 1)))" \
    "UPDATE ${TABLE[$v]} SET n = n + 1 WHERE id = :id;")")
done
rounds "$SECS" "$ROUNDS" "${writes[@]}"
for v in "${VARIANTS[@]}"; do
  got=$(q "SELECT count(*) FROM ${v}_ins")
  [ "$got" -gt 0 ] || die "${v}_ins is empty after the insert runs"
done

# --- the report ---------------------------------------------------------------------------
pg_version=$(q "SELECT version()")
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
elapsed=$(( $(date +%s) - started ))

fmt() { # fmt KIND VALUE
  [ -n "$2" ] || { echo "-"; return; }
  awk -v k="$1" -v v="$2" 'BEGIN {
    if (k == "ms") { if (v >= 1000) printf "%.2f s", v / 1000; else if (v >= 10) printf "%.0f ms", v; else printf "%.2f ms", v }
    else if (k == "tps") { if (v >= 100) printf "%.0f tps", v; else if (v >= 10) printf "%.1f tps", v; else printf "%.2f tps", v }
    else printf "%.1f MiB", v / 1048576 }'
}
# adv KIND DRIFT OTHER: DriftDB's advantage, > 1 when DriftDB is better (time and bytes:
# other / DriftDB; tps: DriftDB / other).
adv() {
  [ -n "$2" ] && [ -n "$3" ] || { echo "-"; return; }
  if [ "$1" = tps ]; then ratio "$2" "$3"; else ratio "$3" "$2"; fi
}
meets() { awk -v r="${1%x}" -v g="$2" 'BEGIN {exit !(r + 0 >= g + 0)}'; }
# line LABEL KIND KEY GOAL_HEAP GOAL_PERIODS: one row of the table; KEY_drift, KEY_heap,
# KEY_per hold the measurements; a goal is a minimum advantage or "-".
line() {
  local label=$1 kind=$2 key=$3 gh=$4 gp=$5 d h p rh rp goal="" result="" missed=()
  d=$(med "${key}_drift"); h=$(med "${key}_heap"); p=$(med "${key}_per")
  rh=$(adv "$kind" "$d" "$h"); rp=$(adv "$kind" "$d" "$p")
  if [ "$gh" != - ]; then goal="vs heap >= ${gh}x"; meets "$rh" "$gh" || missed+=("vs heap"); fi
  if [ "$gp" != - ]; then goal="${goal:+$goal, }vs periods >= ${gp}x"; meets "$rp" "$gp" || missed+=("vs periods"); fi
  if [ -z "$goal" ]; then goal="-"; result="-"
  elif [ ${#missed[@]} -eq 0 ]; then result="met"
  else result=$(printf ', %s' "${missed[@]}"); result="**missed** (${result#, })"; fi
  echo "| $label | $(fmt "$kind" "$d") | $(fmt "$kind" "$h") | $(fmt "$kind" "$p") | $rh | $rp | $goal | $result |"
}
# info LABEL KIND KEY: a row without goals.
info() { line "$1" "$2" "$3" - - | cut -d'|' -f1-7 | sed 's/ *$/ |/'; }
rounds_of() { # rounds_of KEY...: every round's figures
  local k
  for k in "$@"; do
    [ -n "${ALL[$k]:-}" ] || continue
    printf '%s: %s; ' "$k" "$(awk '{for (i = 1; i <= NF; i++) printf "%s%s", (i > 1 ? " " : ""),
      ($i >= 100 ? sprintf("%.0f", $i) : ($i >= 10 ? sprintf("%.1f", $i) : sprintf("%.2f", $i)))}' <<<"${ALL[$k]}")"
  done
  echo
}
num() { printf '%s' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }

commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!docs/benchmarks.md' 2>/dev/null || commit="$commit (with uncommitted changes)"
disk_dev=$(df --output=source "$DRIFTDB_RUN" | tail -1)
disk_fs=$(df --output=fstype "$DRIFTDB_RUN" | tail -1)
disk_name=$(basename "$disk_dev")
disk_rot=$(cat "/sys/block/$disk_name/queue/rotational" 2>/dev/null || echo "?")
cpu=$(awk -F': ' '/^model name/ {print $2; exit}' /proc/cpuinfo)
mem=$(awk '/^MemTotal/ {printf "%.1f GiB", $2 / 1048576}' /proc/meminfo)

report() {
  cat <<EOF
Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`make bench\` at commit $commit, in $((elapsed / 60)) min $((elapsed % 60)) s
(after $prepared s of building, installing and waiting for the machine's Postgres lock).

Machine: $(nproc) cores ($cpu), $mem RAM, $disk_fs on $disk_dev (the kernel says rotational: $disk_rot), $pg_version.
Load average (1, 5, 15 min) before: $load_before; after: $load_after.
The past point: $past, between the first and the second update of the last round (DriftDB seq
$past_seq; the churn ended at seq $churn_seq).
Sizes: BENCH_ROWS=$ROWS BENCH_UPDATES=$UPDATES BENCH_ROUNDS=$ROUNDS BENCH_SECONDS=$SECS BENCH_CLIENTS=$CLIENTS BENCH_COLD_EVENTS=$COLD_EVENTS.

Medians of $ROUNDS interleaved rounds. **vs heap** and **vs periods** are DriftDB's advantage:
the other's time (or bytes) / DriftDB's, or DriftDB's tps / the other's, so **> 1x means
DriftDB is better**. Reads run 1 pgbench client for ${SECS} s per round; small transactions
$CLIENTS clients.

| workload | DriftDB | heap | periods | vs heap | vs periods | goal | result |
| --- | --- | --- | --- | --- | --- | --- | --- |
$(line "ingest, one transaction ($(num "$ROWS") rows, INSERT ... SELECT)" ms ingest 1.0 5)
$(line "update churn ($UPDATES full-table updates of $(num "$ROWS") rows)" ms churn 1.0 10)
$(line "small transactions: insert, pgbench $CLIENTS clients" tps insert 1.0 1.3)
$(line "small transactions: update by key, pgbench $CLIENTS clients" tps update 1.0 1.3)
$(line "current full scan (count, sum)" tps scan 0.7 -)
$(line "point lookup by key" tps point 0.5 -)
$(line "point lookup as of a past time" tps past_point - 20)
$(line "full read as of a past time (count, sum)" tps past_full - 1.5)
$(line "history of one row" tps history - -)
$(line "bytes on disk for the same data and history" bytes bytes - 2)
$(if [ "$cold_rows" -gt 0 ]; then
line "cold start, no snapshot: first count(*) after a restart" ms cold_count_nosnap - -
line "cold start, no snapshot: first point lookup (new session)" ms cold_point_nosnap - -
line "cold start, no snapshot: count(*) in a later new session" ms cold_again_nosnap - -
line "cold start, after drift_snapshot: first count(*) after a restart" ms cold_count_snap - -
line "cold start, after drift_snapshot: first point lookup (new session)" ms cold_point_snap - -
line "cold start, after drift_snapshot: count(*) in a later new session" ms cold_again_snap - -
fi)

The bytes goal (DriftDB <= 0.5x of periods' bytes) is written as an advantage >= 2x.

Informational, same run:

| measurement | DriftDB | heap | periods | vs heap | vs periods |
| --- | --- | --- | --- | --- | --- |
$(info "point lookup as of a past time, periods' history table indexed by id" tps idx_past_point)
$(info "history of one row, periods' history table indexed by id" tps idx_history)
$(info "maintenance after the ingest (drift_snapshot + ANALYZE; VACUUM ANALYZE)" ms maint_load)
$(info "maintenance after the churn (same)" ms maint_churn)
$(if [ "$cold_rows" -gt 0 ]; then
info "building the cold-start table ($(num "$COLD_EVENTS") events)" ms cold_build
info "drift_snapshot of the cold-start table" ms cold_snapshot
fi)

Storage: DriftDB's table directory holds $(num "$DRIFT_LOG_BYTES") bytes of log and
$(num "$DRIFT_SNAP_BYTES") bytes in $DRIFT_SNAP_FILES snapshots (the store's journal, shared
by all tables: $(num "$JOURNAL_BYTES") bytes, not counted); periods' table $(num "$PER_MAIN_BYTES")
bytes and its history table $(num "$(( $(med bytes_per) - PER_MAIN_BYTES ))") bytes. The heap
table keeps no history (its bytes are the current rows and the dead versions VACUUM left
as free space).$(if [ "$cold_rows" -gt 0 ]; then echo " The cold-start table's log: $(num "$COLD_LOG_BYTES") bytes."; fi)

Small transactions, transactions that failed after 10 tries (40001): $(for v in "${VARIANTS[@]}"; do printf '%s insert %s, update %s (retried %s); ' "$v" "${FAILED[insert_$v]:-0}" "${FAILED[update_$v]:-0}" "${RETRIED[update_$v]:-0}"; done)

Rounds (ms, tps or bytes per round, in the order run):
$(rounds_of ingest_drift ingest_heap ingest_per churn_drift churn_heap churn_per)
$(rounds_of insert_drift insert_heap insert_per update_drift update_heap update_per)
$(rounds_of scan_drift scan_heap scan_per point_drift point_heap point_per)
$(rounds_of past_point_drift past_point_per past_full_drift past_full_per history_drift history_per)
$(rounds_of idx_past_point_drift idx_past_point_per)
$(rounds_of idx_history_drift idx_history_per)
$(rounds_of cold_count_nosnap_drift cold_count_nosnap_heap cold_point_nosnap_drift cold_point_nosnap_heap cold_again_nosnap_drift cold_again_nosnap_heap)
$(rounds_of cold_count_snap_drift cold_count_snap_heap cold_point_snap_drift cold_point_snap_heap cold_again_snap_drift cold_again_snap_heap)
EOF
}
report >"$work/report.md"
echo
cat "$work/report.md"

# The results replace what lies between the two markers in the doc.
doc_section "$DOC" '' "$work/report.md"
say "make bench took $((elapsed / 60)) min $((elapsed % 60)) s, after $prepared s of build, install and lock wait"
