#!/usr/bin/env bash
# Point lookup by primary key on a table of N rows: DriftDB vs a heap table with a
# primary key, side by side on one release-built Postgres 15, with pgbench (1 client,
# random keys). Rounds alternate heap / DriftDB; medians and their ratio are printed as
# markdown. Usage: bench/lookup.sh [rows] [seconds per round] [rounds]
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
. "$here/scripts/lib.sh"
cd "$here"
ROWS=${1:-1000000}
SECS=${2:-10}
ROUNDS=${3:-3}
PORT=${DRIFTDB_BENCH_PORT:-5499}
BIN=$("$PG15_CONFIG" --bindir)
DATA="$DRIFTDB_RUN/bench-lookup"

bash scripts/setup.sh
install_driftdb "$PG15_CONFIG" --release
cluster_stop "$BIN" "$DATA" 2>/dev/null || true
as_root rm -rf "$DATA"
cluster_init "$BIN" "$DATA" "$PORT"
cluster_start "$BIN" "$DATA"
trap 'cluster_stop "$BIN" "$DATA"; as_root rm -rf "$DATA"' EXIT
psql_b() { "$BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$PORT" -U postgres -d postgres "$@"; }

say "loading $ROWS rows into a heap table and a DriftDB table"
psql_b <<SQL
CREATE EXTENSION driftdb;
CREATE TABLE heap_t (id int PRIMARY KEY, name text, n int);
INSERT INTO heap_t SELECT g, 'name ' || g, g % 1000 FROM generate_series(1, $ROWS) g;
CREATE FOREIGN TABLE drift_t (id int NOT NULL, name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO drift_t SELECT g, 'name ' || g, g % 1000 FROM generate_series(1, $ROWS) g;
SELECT drift_snapshot('drift_t');
VACUUM ANALYZE heap_t;
ANALYZE drift_t;
SQL
# Both must answer the same, and DriftDB must answer by a key lookup.
check=$(psql_b -tAc "SELECT (SELECT name FROM heap_t WHERE id = 4242) = (SELECT name FROM drift_t WHERE id = 4242)")
[ "$check" = t ] || die "heap and DriftDB disagree"
psql_b -tAc "EXPLAIN SELECT * FROM drift_t WHERE id = 1" | grep -q "primary key lookup" || die "no key lookup"

work=$(mktemp -d)
for t in heap_t drift_t; do
  printf '\\set id random(1, %d)\nSELECT name FROM %s WHERE id = :id;\n' "$ROWS" "$t" > "$work/$t.sql"
done
declare -A tps
for r in $(seq 1 "$ROUNDS"); do
  for t in heap_t drift_t; do
    v=$("$BIN/pgbench" -n -M prepared -c 1 -T "$SECS" -h 127.0.0.1 -p "$PORT" -U postgres \
        -f "$work/$t.sql" postgres 2>/dev/null | awk '/^tps/ {print $3; exit}')
    say "round $r $t: $v tps"
    tps[$t]="${tps[$t]:-} $v"
  done
done
median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }
h=$(echo "${tps[heap_t]}" | median); d=$(echo "${tps[drift_t]}" | median)
echo
echo "| point lookup by key, $ROWS rows, 1 client, prepared | median tps |"
echo "| --- | --- |"
echo "| heap table with primary key | $h |"
echo "| DriftDB table | $d |"
echo "| DriftDB / heap | $(awk -v d="$d" -v h="$h" 'BEGIN {printf "%.2fx", d/h}') |"
echo
echo "rounds (tps): heap:${tps[heap_t]} / DriftDB:${tps[drift_t]}"
