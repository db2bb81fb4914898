#!/usr/bin/env bash
# One key updated many times in one transaction (#22), DriftDB beside heap on one
# release-built PostgreSQL 15 (part of `make bench`): counters, state machines and ORMs that
# flush one object over and over do this. Each size runs one transaction of N statements
# `UPDATE t SET v = v + 1 WHERE id = 1` (a PL/pgSQL loop) on a fresh one-row table of each
# kind, interleaved round by round (the order rotates). A statement's cost must not grow
# with how many earlier events of the key the transaction holds: the report gives the time
# per statement at each size and its growth from the smallest size to the largest (1.00x:
# linear in N), and checks the final value on both.
#
# Environment (defaults in brackets):
#   ONEKEY_SIZES ["12500 25000 50000 100000"]  statements per transaction
#   BENCH_ROUNDS [3]          rounds (medians are over them)
#   BENCH_DOC [docs/benchmarks.md]  where the results go (empty: print only)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
cd "$here/.."

SIZES=${ONEKEY_SIZES:-12500 25000 50000 100000}
ROUNDS=${BENCH_ROUNDS:-3}
DOC=${BENCH_DOC-docs/benchmarks.md}
for v in $SIZES $ROUNDS; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "sizes must be whole numbers above 0, not '$v'"
done

invoked=$(date +%s)
work=$(mktemp -d)
bench_cluster onekey
started=$(date +%s)
trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA" "$work"' EXIT
q() { psql_b -tAc "$1"; }

psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION driftdb"

# fresh VARIANT: an empty one-row table of that kind, named ok_VARIANT.
fresh() {
  case $1 in
    drift) psql_b -c "SET client_min_messages = warning" -c "DROP FOREIGN TABLE IF EXISTS ok_drift" \
      -c "CREATE FOREIGN TABLE ok_drift (id int NOT NULL, v int) SERVER drift OPTIONS (primary_key 'id')" ;;
    heap) psql_b -c "SET client_min_messages = warning" -c "DROP TABLE IF EXISTS ok_heap" \
      -c "CREATE TABLE ok_heap (id int PRIMARY KEY, v int)" ;;
  esac
  psql_b -c "INSERT INTO ok_$1 VALUES (1, 0)"
}

declare -A CHECK
for r in $(seq 1 "$ROUNDS"); do
  for n in $SIZES; do
    while read -r variant; do
      fresh "$variant"
      ms=$(sql_ms "DO \$\$ BEGIN FOR i IN 1..$n LOOP UPDATE ok_$variant SET v = v + 1 WHERE id = 1; END LOOP; END \$\$;")
      got=$(q "SELECT v FROM ok_$variant WHERE id = 1")
      [ "$got" = "$n" ] || die "$variant after $n updates holds $got"
      CHECK[$variant]="${CHECK[$variant]:-} ok"
      say "round $r, $n updates, $variant: $ms ms"
      ALL["$n $variant"]="${ALL["$n $variant"]:-} $ms"
    done < <(rotate "$((r - 1))" drift heap)
  done
done
finished=$(date +%s)

us_per() { awk -v ms="$1" -v n="$2" 'BEGIN {printf "%.1f", ms * 1000 / n}'; }

report() {
  local first last n d h
  first=${SIZES%% *}; last=${SIZES##* }
  echo "Run $(date -u +%Y-%m-%d) at $(git rev-parse --short HEAD) on $(nproc) cores, release build, PostgreSQL 15; $ROUNDS rounds, medians; $((finished - started)) s (setup $((started - invoked)) s)."
  echo
  echo "| updates of one key in one transaction | DriftDB ms | heap ms | DriftDB µs/statement | heap µs/statement | DriftDB/heap |"
  echo "| --- | --- | --- | --- | --- | --- |"
  for n in $SIZES; do
    d=$(median <<<"${ALL["$n drift"]}"); h=$(median <<<"${ALL["$n heap"]}")
    echo "| $n | $(printf '%.0f' "$d") | $(printf '%.0f' "$h") | $(us_per "$d" "$n") | $(us_per "$h" "$n") | $(ratio "$d" "$h") |"
  done
  echo
  d=$(awk -v a="$(median <<<"${ALL["$last drift"]}")" -v b="$(median <<<"${ALL["$first drift"]}")" \
    -v m="$last" -v k="$first" 'BEGIN {printf "%.2fx", (a / m) / (b / k)}')
  h=$(awk -v a="$(median <<<"${ALL["$last heap"]}")" -v b="$(median <<<"${ALL["$first heap"]}")" \
    -v m="$last" -v k="$first" 'BEGIN {printf "%.2fx", (a / m) / (b / k)}')
  echo "Cost per statement at $last updates over its cost at $first (1.00x: each statement costs the same however many came before): DriftDB $d, heap $h. Every run ended with the key's value equal to its number of updates."
}
report >"$work/report.md"
echo
cat "$work/report.md"
doc_section "$DOC" onekey "$work/report.md"
