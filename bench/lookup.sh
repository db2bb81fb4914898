#!/usr/bin/env bash
# Point lookup by primary key on a table of N rows: DriftDB vs a heap table with a primary
# key, side by side on one release-built PostgreSQL 15, pgbench with random keys, rounds
# alternating; medians and their ratio as markdown.
# Usage: bench/lookup.sh [rows] [seconds per round] [rounds]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
ROWS=${1:-1000000}
SECS=${2:-10}
ROUNDS=${3:-3}
bench_cluster lookup

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
rounds "$SECS" "$ROUNDS" heap="$work/heap_t.sql" drift="$work/drift_t.sql"
echo
echo "| point lookup by key, $ROWS rows, 1 client, prepared | median tps |"
echo "| --- | --- |"
echo "| heap table with primary key | ${TPS[heap]} |"
echo "| DriftDB table | ${TPS[drift]} |"
echo "| DriftDB / heap | $(ratio "${TPS[drift]}" "${TPS[heap]}") |"
echo
echo "rounds (tps): heap:${ALL[heap]} / DriftDB:${ALL[drift]}"
