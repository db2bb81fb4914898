#!/usr/bin/env bash
# `make bench-scale`: what DriftDB's costs do as history grows (#19), side by side with a heap
# table, on one release-built PostgreSQL 15. A DriftDB table and a heap table of SCALE_ROWS
# rows, then a cluster history of about SCALE_HISTORY_SMALL commits and later of about
# SCALE_HISTORY commits (imported: drift_import turns each event with its own txid into one
# transaction group of the journal, the way a commit makes one), and at each point, side by
# side and interleaved:
#   - a new session's first statement and its first point lookup (psql's \timing: the
#     statement, not the connection), SCALE_SESSIONS sessions each;
#   - the private memory of a new backend after one point lookup (/proc/<pid>/smaps_rollup:
#     Private_Clean + Private_Dirty), and what that session read of DriftDB's past
#     (drift_backend_stats: journal groups and table-log events);
#   - the first statement after a restart (the server's first DriftDB open);
#   - pgbench -C point lookups (a new connection per transaction), SCALE_CONNECT_CLIENTS clients;
#   - small transactions (insert, update by key) at each of SCALE_CLIENTS clients.
# After the small transactions the DriftDB table is snapshotted (not timed), so that every
# point's reads start from a table with nothing in its log after its snapshot; the
# first point lookup with the events the small transactions left after the snapshot is
# measured once, at the end, with what it read. Last, a snapshot of the big table: its time,
# the WAL it wrote, and the backend's peak memory (VmHWM) against its memory before.
#
# Environment (defaults in brackets):
#   SCALE_ROWS [10000000]            rows of the two tables
#   SCALE_HISTORY_SMALL [10000]      commits of history at the first point
#   SCALE_HISTORY [1000000]          commits of history at the second point
#   SCALE_SESSIONS [15]              new sessions per first-statement measurement
#   SCALE_CONNECT_CLIENTS [4]        clients of the pgbench -C point lookups
#   SCALE_CLIENTS ["4 16"]           client counts of the small transactions
#   BENCH_ROUNDS [3]                 rounds of every pgbench workload (medians)
#   BENCH_SECONDS [5]                seconds of each pgbench run
#   BENCH_DOC [docs/benchmarks.md]   where the results go (empty: print only)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
cd "$here/.."

ROWS=${SCALE_ROWS:-10000000}
SMALL=${SCALE_HISTORY_SMALL:-10000}
LARGE=${SCALE_HISTORY:-1000000}
SESSIONS=${SCALE_SESSIONS:-15}
CCLIENTS=${SCALE_CONNECT_CLIENTS:-4}
CLIENT_COUNTS=${SCALE_CLIENTS:-4 16}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-5}
DOC=${BENCH_DOC-docs/benchmarks.md}
for v in $ROWS $SMALL $LARGE $SESSIONS $CCLIENTS $CLIENT_COUNTS $ROUNDS $SECS; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "sizes must be whole numbers above 0, not '$v'"
done
[ "$LARGE" -gt "$SMALL" ] || die "SCALE_HISTORY ($LARGE) must be above SCALE_HISTORY_SMALL ($SMALL)"
[ "$ROWS" -ge 1000 ] || die "SCALE_ROWS must be at least 1000"

invoked=$(date +%s)
mkdir -p target/bench
BENCH_LOG=$PWD/target/bench/pgbench-scale.log
: >"$BENCH_LOG"
work=$(mktemp -d)
bench_cluster scale
started=$(date +%s)
prepared=$((started - invoked))
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA" "$work"' EXIT

q() { psql_b -tAc "$1"; }
add() { ALL[$1]="${ALL[$1]:-} $2"; }
med() { if [ -n "${ALL[$1]:-}" ]; then echo "${ALL[$1]}" | median; fi; }
rand_id() { echo $(( (RANDOM * 32768 + RANDOM) % ROWS + 1 )); }
script() { # script NAME SQL...: a pgbench script file
  local name=$1; shift
  printf '%s\n' "$@" >"$work/$name.sql"
  echo "$name=$work/$name.sql"
}
# timed KEY SQL: runs SQL as psql's one statement, adding psql's \timing of it to KEY.
timed() { add "$1" "$(sql_ms "$2")"; }

psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION driftdb"

# --- the tables ---------------------------------------------------------------------------
say "loading $ROWS rows into a DriftDB table and a heap table"
psql_b >/dev/null <<SQL
CREATE FOREIGN TABLE drift_t (id int NOT NULL, name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE heap_t (id int PRIMARY KEY, name text, n int);
CREATE SEQUENCE drift_ins_id;
CREATE FOREIGN TABLE drift_ins (id int NOT NULL DEFAULT nextval('drift_ins_id'), name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
CREATE TABLE heap_ins (id serial PRIMARY KEY, name text, n int);
SQL
timed build_drift "INSERT INTO drift_t SELECT g, 'name ' || g, 0 FROM generate_series(1, $ROWS) g"
timed build_heap "INSERT INTO heap_t SELECT g, 'name ' || g, 0 FROM generate_series(1, $ROWS) g"
timed maint_drift "SELECT drift_snapshot('drift_t')"
timed maint_heap "VACUUM ANALYZE heap_t"
# The DriftDB table is left unanalyzed, as autovacuum leaves foreign tables: its planner
# estimates come from the engine (a few snapshot blocks), as a user's would.
for t in drift_t heap_t; do
  got=$(q "SELECT count(*) || '/' || sum(id) FROM $t")
  [ "$got" = "$ROWS/$((ROWS * (ROWS + 1) / 2))" ] || die "$t holds $got after the load"
done

# history TABLE COMMITS: imports COMMITS commits of history into the new DriftDB table TABLE
# (one row: an INSERT, then PATCHes), each event its own transaction (own txid, times one
# millisecond apart and before now), so the journal gains COMMITS groups.
history() {
  local t=$1 n=$2
  say "importing $n commits of history into $t"
  psql_b >/dev/null <<SQL
CREATE FOREIGN TABLE $t (id int NOT NULL, n int) SERVER drift OPTIONS (primary_key 'id');
CREATE VIEW ${t}_events AS
  SELECT g::bigint AS seq,
         now() - interval '1 day' + g * interval '1 millisecond' AS committed_at,
         (1000 + g)::text::xid8 AS txid, 'postgres'::name AS role,
         CASE WHEN g = 1 THEN 'INSERT' ELSE 'PATCH' END AS op,
         '{"id": "1"}'::jsonb AS key,
         CASE WHEN g = 1 THEN jsonb_build_object('id', '1', 'n', '1')
              ELSE jsonb_build_object('n', g::text) END AS data
    FROM generate_series(1, $n) g;
SQL
  add "import_$t" "$(sql_ms "SELECT drift_import('$t', '${t}_events')")"
  got=$(q "SELECT n FROM $t WHERE id = 1")
  [ "$got" = "$n" ] || die "$t holds n = $got after importing $n commits, not $n"
}

# backend_mem TABLE ID: in a new session, one point lookup, then what that backend holds:
# "private_kB groups_read tail_events" (the last two only for DriftDB).
backend_mem() {
  local out
  out=$(psql_b -tA -c "SELECT n FROM $1 WHERE id = $2" \
    -c "SELECT pg_read_file('/proc/self/smaps_rollup')" \
    -c "SELECT coalesce(string_agg(name || '=' || value, ' '), '') FROM drift_backend_stats()
          WHERE name IN ('journal_groups_read', 'tail_events')")
  awk '/^Private_(Clean|Dirty):/ {p += $2}
       /journal_groups_read=/ {for (i = 1; i <= NF; i++) {split($i, kv, "="); s[kv[1]] = kv[2]}}
       END {if (p == 0) exit 1; print p, s["journal_groups_read"] + 0, s["tail_events"] + 0}' <<<"$out" \
    || die "no smaps_rollup figures for a session on $1"
}

# point P: every measurement at history point P (small or large).
point() {
  local p=$1 r i v id m mem groups tail
  HIST_SEQ[$p]=$(q "SELECT drift_current_seq()")
  say "history point $p: seq ${HIST_SEQ[$p]}"
  # New sessions: the first statement, then the first point lookup, the variants in turns.
  for i in $(seq 1 "$SESSIONS"); do
    mapfile -t order < <(rotate "$((i - 1))" drift heap)
    for v in "${order[@]}"; do
      if [ "$v" = drift ]; then timed "first_${p}_drift" "SELECT drift_current_seq()"
      else timed "first_${p}_heap" "SELECT 1"; fi
    done
    id=$(rand_id)
    for v in "${order[@]}"; do timed "lookup_${p}_$v" "SELECT n FROM ${v}_t WHERE id = $id"; done
    for v in "${order[@]}"; do
      m=$(backend_mem "${v}_t" "$(rand_id)")
      read -r mem groups tail <<<"$m"
      add "mem_${p}_$v" "$mem"
      if [ "$v" = drift ]; then add "groups_${p}" "$groups"; add "tail_${p}" "$tail"; fi
    done
  done
  # The first statement after a restart: the server's first DriftDB open.
  for r in $(seq 1 "$ROUNDS"); do
    bench_restart
    timed "restart_${p}_drift" "SELECT drift_current_seq()"
    timed "restart_lookup_${p}_drift" "SELECT n FROM drift_t WHERE id = $(rand_id)"
    timed "restart_lookup_${p}_heap" "SELECT n FROM heap_t WHERE id = $(rand_id)"
  done
  # pgbench -C: a new connection for every transaction.
  say "history point $p: pgbench -C point lookups, $CCLIENTS clients"
  PGB_CLIENTS=$CCLIENTS
  PGB_OPTS=(-C)
  PGB_MODE=simple
  rounds "$SECS" "$ROUNDS" \
    "$(script "connect_${p}_drift" "\\set id random(1, $ROWS)" "SELECT n FROM drift_t WHERE id = :id;")" \
    "$(script "connect_${p}_heap" "\\set id random(1, $ROWS)" "SELECT n FROM heap_t WHERE id = :id;")"
  # Small transactions: inserts into fresh rows, updates by key with every client on its
  # own keys (two clients never change one row at once).
  PGB_MODE=prepared
  PGB_OPTS=(--max-tries=10)
  local c
  for c in $CLIENT_COUNTS; do
    say "history point $p: small transactions, $c clients"
    PGB_CLIENTS=$c
    rounds "$SECS" "$ROUNDS" \
      "$(script "insert_${p}_c${c}_drift" "\\set n random(1, 1000)" "INSERT INTO drift_ins (name, n) VALUES ('name', :n);")" \
      "$(script "insert_${p}_c${c}_heap" "\\set n random(1, 1000)" "INSERT INTO heap_ins (name, n) VALUES ('name', :n);")" \
      "$(script "update_${p}_c${c}_drift" "\\set id 1 + :client_id + $c * random(0, $((ROWS / c - 1)))" "UPDATE drift_t SET n = n + 1 WHERE id = :id;")" \
      "$(script "update_${p}_c${c}_heap" "\\set id 1 + :client_id + $c * random(0, $((ROWS / c - 1)))" "UPDATE heap_t SET n = n + 1 WHERE id = :id;")"
  done
  for v in drift heap; do
    got=$(q "SELECT sum(n) FROM ${v}_t")
    [ "$got" -gt 0 ] || die "${v}_t has no updates after the update runs"
  done
}

declare -A HIST_SEQ
history drift_hist_small "$SMALL"
point small
timed snap_after_small_drift "SELECT drift_snapshot('drift_t')"
history drift_hist_large "$((LARGE - SMALL))"
point large

# The first point lookup with the small transactions' events after the table's snapshot.
for i in $(seq 1 "$SESSIONS"); do
  m=$(backend_mem drift_t "$(rand_id)")
  read -r mem groups tail <<<"$m"
  add tailmem_drift "$mem"; add tailtail_drift "$tail"
  timed taillookup_drift "SELECT n FROM drift_t WHERE id = $(rand_id)"
done

# A snapshot of the big table: its time, the WAL it wrote, the backend's peak memory.
say "snapshot of the $ROWS-row table"
snap_out=$(psql_b -tA <<SQL
SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmRSS:\s+(\d+)'))[1];
SELECT pg_current_wal_lsn() AS lsn0 \gset
\timing on
SELECT drift_snapshot('drift_t');
\timing off
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0')::bigint;
SELECT (regexp_match(pg_read_file('/proc/self/status'), 'VmHWM:\s+(\d+)'))[1];
SELECT snapshot_bytes FROM drift_tables WHERE table_name = 'drift_t'::regclass;
SQL
)
snap_rss0=$(sed -n 1p <<<"$snap_out")
snap_ms=$(awk '/^Time: / {print $2}' <<<"$snap_out")
mapfile -t snap_tail < <(grep -v '^Time: ' <<<"$snap_out" | tail -3)
snap_wal=${snap_tail[0]}; snap_hwm=${snap_tail[1]}; snap_bytes=${snap_tail[2]}
vac_out=$(psql_b -tA <<SQL
SELECT pg_current_wal_lsn() AS lsn0 \gset
\timing on
VACUUM ANALYZE heap_t;
\timing off
SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), :'lsn0')::bigint;
SELECT pg_table_size('heap_t');
SQL
)
vac_ms=$(awk '/^Time: / {print $2}' <<<"$vac_out")
mapfile -t vac_tail < <(grep -v '^Time: ' <<<"$vac_out" | tail -2)
for v in "$snap_rss0" "$snap_ms" "$snap_wal" "$snap_hwm" "$snap_bytes" "$vac_ms" "${vac_tail[@]}"; do
  [[ $v =~ ^[0-9.]+$ ]] || die "the snapshot measurement gave '$v' (output: $snap_out / $vac_out)"
done

# --- the report ---------------------------------------------------------------------------
elapsed=$(( $(date +%s) - started ))
load_after=$(cut -d' ' -f1-3 /proc/loadavg)
commit=$(git rev-parse --short HEAD)
git diff --quiet HEAD -- . ':!docs/benchmarks.md' 2>/dev/null || commit="$commit (with uncommitted changes)"
num() { printf '%s' "$1" | sed ':a; s/\B[0-9]\{3\}\>/,&/; ta'; }
ms() { awk -v v="$1" 'BEGIN {if (v >= 1000) printf "%.2f s", v / 1000; else if (v >= 10) printf "%.0f ms", v; else printf "%.2f ms", v}'; }
tps() { awk -v v="$1" 'BEGIN {printf "%.0f tps", v}'; }
mib() { awk -v v="$1" 'BEGIN {printf "%.1f MiB", v / 1024}'; } # from kB
# verdict OK: "met" or "**missed**".
verdict() { if [ "$1" = 1 ]; then echo met; else echo "**missed**"; fi; }
ge() { awk -v a="$1" -v b="$2" 'BEGIN {exit !(a + 0 >= b + 0)}'; }
# row LABEL KIND KEY GOAL: one measured quantity at both points, DriftDB and heap side by
# side; KIND ms (lower is better) or tps; GOAL: "heap" (>= 0.5x heap at both points and
# within 1.2x of itself), "heap1" (>= 1.0x heap at both points), "-".
row() {
  local label=$1 kind=$2 key=$3 goal=$4 ds dl hs hl rs rl growth ok=1 g
  ds=$(med "${key/@/small}_drift"); dl=$(med "${key/@/large}_drift")
  hs=$(med "${key/@/small}_heap"); hl=$(med "${key/@/large}_heap")
  if [ "$kind" = ms ]; then
    rs=$(ratio "$hs" "$ds"); rl=$(ratio "$hl" "$dl"); growth=$(ratio "$dl" "$ds")
  else
    rs=$(ratio "$ds" "$hs"); rl=$(ratio "$dl" "$hl"); growth=$(ratio "$ds" "$dl")
  fi
  case $goal in
    heap) g=">= 0.5x heap, growth <= 1.2x"
          ge "${rs%x}" 0.5 && ge "${rl%x}" 0.5 && ge 1.2 "${growth%x}" || ok=0 ;;
    heap1) g=">= 1.0x heap"; ge "${rs%x}" 1.0 && ge "${rl%x}" 1.0 || ok=0 ;;
    *) g=- ;;
  esac
  echo "| $label | $($kind "$ds") | $($kind "$hs") | $rs | $($kind "$dl") | $($kind "$hl") | $rl | $growth | $g | $([ "$g" = - ] && echo - || verdict $ok) |"
}
mem_small=$(med mem_small_drift); mem_large=$(med mem_large_drift)
mem_heap_small=$(med mem_small_heap); mem_heap_large=$(med mem_large_heap)
extra_small=$((${mem_small%.*} - ${mem_heap_small%.*})); extra_large=$((${mem_large%.*} - ${mem_heap_large%.*}))
mem_ok=0; [ "$extra_small" -le 16384 ] && [ "$extra_large" -le 16384 ] && mem_ok=1
wal_pct=$(awk -v w="$snap_wal" -v b="$snap_bytes" 'BEGIN {printf "%.1f", 100 * w / b}')
peak_kb=$((snap_hwm - snap_rss0))
snap_ok=0; ge 5 "$wal_pct" && [ "$peak_kb" -le 262144 ] && snap_ok=1

report() {
  cat <<EOF
Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`make bench-scale\` at commit $commit, in $((elapsed / 60)) min $((elapsed % 60)) s
(after $prepared s of building, installing and waiting for the lock); $(nproc) cores, $(q "SELECT version()" | cut -d, -f1).
Load average (1, 5, 15 min) before: $load_before; after: $load_after.
Sizes: SCALE_ROWS=$ROWS SCALE_HISTORY_SMALL=$SMALL SCALE_HISTORY=$LARGE SCALE_SESSIONS=$SESSIONS SCALE_CONNECT_CLIENTS=$CCLIENTS SCALE_CLIENTS="$CLIENT_COUNTS" BENCH_ROUNDS=$ROUNDS BENCH_SECONDS=$SECS.
History points: the cluster's seq was $(num "${HIST_SEQ[small]}") at the first point and $(num "${HIST_SEQ[large]}") at the second (the
$(num "$ROWS") rows' one commit, the imported commits, and the commits of the earlier small transactions).

New-session figures are medians of $SESSIONS sessions, the variants taking turns; pgbench
figures medians of $ROUNDS interleaved rounds of $SECS s. **vs heap** is DriftDB's advantage
(heap's time / DriftDB's, or DriftDB's tps / heap's: > 1x means DriftDB is better);
**growth** is DriftDB's figure at the large history over the small one (time), or the
inverse (tps): > 1x means slower with more history.

| measure | DriftDB, $(num "$SMALL") commits | heap | vs heap | DriftDB, $(num "$LARGE") commits | heap | vs heap | growth | goal | result |
| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |
$(row "first statement of a new session (DriftDB: \`drift_current_seq()\`, heap: \`SELECT 1\`)" ms "first_@" -)
$(row "first point lookup of a new session" ms "lookup_@" heap)
$(row "point lookups, pgbench -C ($CCLIENTS clients, a new connection per transaction)" tps "connect_@" heap)
$(for c in $CLIENT_COUNTS; do
row "small transactions: insert, $c clients" tps "insert_@_c$c" heap1
row "small transactions: update by key, $c clients" tps "update_@_c$c" heap1
done)
$(row "first point lookup after a restart" ms "restart_lookup_@" -)

| measure | $(num "$SMALL") commits | $(num "$LARGE") commits | goal | result |
| --- | --- | --- | --- | --- |
| a new backend's private memory after one point lookup: DriftDB | $(mib "$mem_small") | $(mib "$mem_large") | | |
| the same: heap | $(mib "$mem_heap_small") | $(mib "$mem_heap_large") | | |
| DriftDB's part (the difference) | $(mib "$extra_small") | $(mib "$extra_large") | <= 16 MiB | $(verdict $mem_ok) |
| journal groups that session read | $(num "$(med groups_small)") | $(num "$(med groups_large)") | | |
| table-log events that session read | $(num "$(med tail_small)") | $(num "$(med tail_large)") | | |
| first DriftDB statement after a restart (\`drift_current_seq()\`) | $(ms "$(med restart_small_drift)") | $(ms "$(med restart_large_drift)") | | |

A snapshot of the $(num "$ROWS")-row table at the end (heap's VACUUM ANALYZE beside it): $(ms "$snap_ms") (VACUUM ANALYZE: $(ms "$vac_ms")); WAL $(num "$snap_wal") bytes
for a snapshot file of $(num "$snap_bytes") bytes, ${wal_pct}% (VACUUM ANALYZE: $(num "${vac_tail[0]}") bytes of WAL, the
table $(num "${vac_tail[1]}") bytes); the backend's peak resident memory $(mib "$snap_hwm") against
$(mib "$snap_rss0") before, $(mib "$peak_kb") more. Goal: WAL <= 5% of the snapshot, peak <= 256 MiB: $(verdict $snap_ok).

Before that snapshot, a new session's first point lookup with the small transactions' events after
the table's snapshot (the session read $(num "$(med tailtail_drift)") table-log events): $(ms "$(med taillookup_drift)"), its backend $(mib "$(med tailmem_drift)") private.

Building, information: $(num "$ROWS") rows in one INSERT ... SELECT: DriftDB $(ms "$(med build_drift)"), heap
$(ms "$(med build_heap)"); then drift_snapshot $(ms "$(med maint_drift)"), VACUUM ANALYZE $(ms "$(med maint_heap)"). Imports:
$(num "$SMALL") commits $(ms "$(med import_drift_hist_small)"), $(num "$((LARGE - SMALL))") commits $(ms "$(med import_drift_hist_large)").
Small transactions, failed after 10 tries: $(for k in $(printf '%s\n' "${!FAILED[@]}" | sort); do printf '%s %s; ' "$k" "${FAILED[$k]}"; done)

Every figure, by name (in the order measured within each): $(for k in $(printf '%s\n' "${!ALL[@]}" | sort); do printf '%s: %s; ' "$k" "$(printf '%.4g ' ${ALL[$k]} | sed 's/ $//')"; done)
EOF
}
report >"$work/report.md"
echo
cat "$work/report.md"
doc_section "$DOC" scale "$work/report.md"
say "make bench-scale took $((elapsed / 60)) min $((elapsed % 60)) s"
