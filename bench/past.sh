#!/usr/bin/env bash
# Reading the past: DriftDB vs the periods extension's system versioning (history table and
# triggers), side by side on one release-built PostgreSQL 15. Both tables get N rows, then
# the time is noted, then two full-table updates make history. Measured as of that time:
# a point lookup by key, and a full read. pgbench, 1 client, rounds alternating; medians and
# ratios (DriftDB first) as markdown.
# Usage: bench/past.sh [rows] [seconds per round] [rounds]
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
ROWS=${1:-100000}
SECS=${2:-10}
ROUNDS=${3:-3}
bench_cluster past

say "loading $ROWS rows into a periods-versioned table and a DriftDB table"
psql_b <<SQL
CREATE EXTENSION driftdb;
CREATE EXTENSION periods CASCADE;
CREATE TABLE per_t (id int PRIMARY KEY, name text, n int);
SELECT periods.add_system_time_period('per_t');
SELECT periods.add_system_versioning('per_t');
CREATE FOREIGN TABLE drift_t (id int NOT NULL, name text, n int)
  SERVER drift OPTIONS (primary_key 'id');
INSERT INTO per_t (id, name, n) SELECT g, 'name ' || g, 0 FROM generate_series(1, $ROWS) g;
INSERT INTO drift_t SELECT g, 'name ' || g, 0 FROM generate_series(1, $ROWS) g;
SELECT drift_snapshot('drift_t');
SQL
past=$(psql_b -tAc "SELECT clock_timestamp()")
seq=$(psql_b -tAc "SELECT drift_seq_at('$past')")
say "the past point: $past (DriftDB seq $seq); making history"
psql_b <<SQL
UPDATE per_t SET n = n + 1;
UPDATE drift_t SET n = n + 1;
UPDATE per_t SET n = n + 1;
UPDATE drift_t SET n = n + 1;
SELECT drift_snapshot('drift_t');
VACUUM ANALYZE per_t;
ANALYZE per_t_history;
ANALYZE drift_t;
SQL
# Both must give the same past, and not the present.
p=$(psql_b -tAc "SELECT count(*) || '/' || sum(n) FROM per_t__as_of('$past')")
d=$(psql_b -tAc "SELECT count(*) || '/' || sum(n) FROM drift_as_of(NULL::drift_t, '$past'::timestamptz)")
[ "$p" = "$ROWS/0" ] && [ "$d" = "$ROWS/0" ] || die "the past differs: periods $p, DriftDB $d"

work=$(mktemp -d)
cat > "$work/per_point.sql" <<SQL
\set id random(1, $ROWS)
SELECT name, n FROM per_t__as_of('$past') WHERE id = :id;
SQL
# DriftDB's session setting: the key lookup is pushed down at that point.
cat > "$work/drift_point.sql" <<SQL
\set id random(1, $ROWS)
SET driftdb.as_of = '$seq';
SELECT name, n FROM drift_t WHERE id = :id;
SQL
echo "SELECT count(*), sum(n) FROM per_t__as_of('$past');" > "$work/per_full.sql"
echo "SELECT count(*), sum(n) FROM drift_as_of(NULL::drift_t, '$past'::timestamptz);" > "$work/drift_full.sql"

rounds "$SECS" "$ROUNDS" periods_point="$work/per_point.sql" drift_point="$work/drift_point.sql"
rounds "$SECS" "$ROUNDS" periods_full="$work/per_full.sql" drift_full="$work/drift_full.sql"
echo
echo "| as of a past time, $ROWS rows, 2 versions of history each | periods tps | DriftDB tps | DriftDB / periods |"
echo "| --- | --- | --- | --- |"
echo "| point lookup by key | ${TPS[periods_point]} | ${TPS[drift_point]} | $(ratio "${TPS[drift_point]}" "${TPS[periods_point]}") |"
echo "| full read (count, sum) | ${TPS[periods_full]} | ${TPS[drift_full]} | $(ratio "${TPS[drift_full]}" "${TPS[periods_full]}") |"
echo
echo "rounds (tps): periods point:${ALL[periods_point]} / DriftDB point:${ALL[drift_point]}"
echo "rounds (tps): periods full:${ALL[periods_full]} / DriftDB full:${ALL[drift_full]}"
