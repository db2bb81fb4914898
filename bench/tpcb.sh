#!/usr/bin/env bash
# pgbench's TPC-B-like transaction on DriftDB tables and on heap tables, side by side on one
# release-built PostgreSQL 15 (part of `make bench`): hot rows that several clients change
# at once (every transaction updates one of `scale` branches), so writers wait for each
# other's row locks. Each client count and scale runs both variants, interleaved round by
# round (the order rotates); pgbench retries serialization failures and deadlocks
# (--max-tries) and the report counts retries and transactions that failed. After each
# scale's runs, the TPC-B balance invariant is checked on both: the sums of the account,
# teller and branch balances and of the history's deltas are one number.
#
# Environment (defaults in brackets):
#   TPCB_SCALES ["1 10"]      pgbench scales (100,000 accounts per scale)
#   TPCB_CLIENTS ["4 16"]     client counts
#   BENCH_ROUNDS [3]          rounds (medians are over them)
#   BENCH_SECONDS [5]         seconds of each pgbench run
#   BENCH_DOC [docs/benchmarks.md]  where the results go (empty: print only)
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=bench/lib.sh
. "$here/lib.sh"
cd "$here/.."

SCALES=${TPCB_SCALES:-1 10}
CLIENT_COUNTS=${TPCB_CLIENTS:-4 16}
ROUNDS=${BENCH_ROUNDS:-3}
SECS=${BENCH_SECONDS:-5}
DOC=${BENCH_DOC-docs/benchmarks.md}
for v in $SCALES $CLIENT_COUNTS $ROUNDS $SECS; do
  [[ $v =~ ^[1-9][0-9]*$ ]] || die "sizes must be whole numbers above 0, not '$v'"
done

invoked=$(date +%s)
mkdir -p target/bench
BENCH_LOG=$PWD/target/bench/pgbench-tpcb.log
: >"$BENCH_LOG"
work=$(mktemp -d)
bench_cluster tpcb
started=$(date +%s)
trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA" "$work"' EXIT
q() { psql_b -tAc "$1"; }

psql_b -c "SET client_min_messages = warning" -c "CREATE EXTENSION driftdb" \
  -c "CREATE SCHEMA drift"

# load SCALE: heap tables by pgbench -i (primary keys included), DriftDB tables (schema
# drift, the same columns and keys; the history without a key, as pgbench's) filled with the
# same rows.
load() {
  local s=$1
  "$BENCH_BIN/pgbench" -i -q -s "$s" -h 127.0.0.1 -p "$BENCH_PORT" -U postgres postgres \
    >>"$BENCH_LOG" 2>&1 || die "pgbench -i -s $s failed (see $BENCH_LOG)"
  psql_b >/dev/null <<SQL
SET client_min_messages = warning;
DROP FOREIGN TABLE IF EXISTS drift.pgbench_accounts, drift.pgbench_tellers,
  drift.pgbench_branches, drift.pgbench_history;
CREATE FOREIGN TABLE drift.pgbench_branches (bid int NOT NULL, bbalance int, filler char(88))
  SERVER drift OPTIONS (primary_key 'bid');
CREATE FOREIGN TABLE drift.pgbench_tellers (tid int NOT NULL, bid int, tbalance int, filler char(84))
  SERVER drift OPTIONS (primary_key 'tid');
CREATE FOREIGN TABLE drift.pgbench_accounts (aid int NOT NULL, bid int, abalance int, filler char(84))
  SERVER drift OPTIONS (primary_key 'aid');
CREATE FOREIGN TABLE drift.pgbench_history (tid int, bid int, aid int, delta int,
  mtime timestamp, filler char(22)) SERVER drift;
INSERT INTO drift.pgbench_branches SELECT * FROM public.pgbench_branches;
INSERT INTO drift.pgbench_tellers SELECT * FROM public.pgbench_tellers;
INSERT INTO drift.pgbench_accounts SELECT * FROM public.pgbench_accounts;
SELECT drift_snapshot('drift.pgbench_accounts');
SQL
}

# script VARIANT SCALE: pgbench's built-in tpcb-like script on the variant's tables.
script() {
  local v=$1 s=$2 schema
  schema=$([ "$v" = drift ] && echo drift || echo public)
  cat >"$work/tpcb_${v}_$s.sql" <<SQL
\\set aid random(1, 100000 * $s)
\\set bid random(1, $s)
\\set tid random(1, 10 * $s)
\\set delta random(-5000, 5000)
BEGIN;
UPDATE $schema.pgbench_accounts SET abalance = abalance + :delta WHERE aid = :aid;
SELECT abalance FROM $schema.pgbench_accounts WHERE aid = :aid;
UPDATE $schema.pgbench_tellers SET tbalance = tbalance + :delta WHERE tid = :tid;
UPDATE $schema.pgbench_branches SET bbalance = bbalance + :delta WHERE bid = :bid;
INSERT INTO $schema.pgbench_history (tid, bid, aid, delta, mtime) VALUES (:tid, :bid, :aid, :delta, CURRENT_TIMESTAMP);
END;
SQL
  echo "$work/tpcb_${v}_$s.sql"
}

# invariant SCHEMA: "a=t=b=h" sums, and whether they agree.
invariant() {
  q "SELECT (SELECT sum(abalance) FROM $1.pgbench_accounts) || '=' ||
            (SELECT sum(tbalance) FROM $1.pgbench_tellers) || '=' ||
            (SELECT sum(bbalance) FROM $1.pgbench_branches) || '=' ||
            coalesce((SELECT sum(delta) FROM $1.pgbench_history), 0)"
}

PGB_OPTS=(--max-tries=100)
declare -A CHECK
for s in $SCALES; do
  say "TPC-B-like, scale $s: loading"
  load "$s"
  for c in $CLIENT_COUNTS; do
    say "TPC-B-like, scale $s, $c clients: $ROUNDS rounds of ${SECS}s per variant"
    PGB_CLIENTS=$c
    rounds "$SECS" "$ROUNDS" "s${s}c${c}_drift=$(script drift "$s")" "s${s}c${c}_heap=$(script heap "$s")"
  done
  for schema in drift public; do
    sums=$(invariant "$schema")
    ok=$(awk -F= '{print ($1 == $2 && $2 == $3 && $3 == $4) ? "holds" : "**broken**"}' <<<"$sums")
    CHECK["$s $schema"]="$ok ($sums)"
    [ "$ok" = holds ] || say "the balance invariant is broken on $schema at scale $s: $sums"
  done
done
elapsed=$(( $(date +%s) - started ))
commit=$(git rev-parse --short HEAD)
med() { if [ -n "${ALL[$1]:-}" ]; then echo "${ALL[$1]}" | median; fi; }

report() {
  echo "Measured $(date -u '+%Y-%m-%d %H:%M UTC') by \`bash bench/tpcb.sh\` (part of \`make bench\`) at commit $commit, in $((elapsed / 60)) min $((elapsed % 60)) s"
  echo "(after $((started - invoked)) s of building, installing and waiting for the lock); $(nproc) cores, $("$BENCH_BIN/postgres" --version)."
  echo "pgbench's tpcb-like transaction (as a script: \`-M prepared\`, \`--max-tries=100\`), ${SECS} s per run, medians of $ROUNDS interleaved rounds."
  echo "Goal: DriftDB >= 0.5x heap's tps at scale 1 and >= 0.8x at scale 10, no transaction failing."
  echo
  echo "| scale | clients | DriftDB tps | heap tps | DriftDB / heap | goal | DriftDB retried / failed | heap retried / failed |"
  echo "| --- | --- | --- | --- | --- | --- | --- | --- |"
  local s c d h r goal met
  for s in $SCALES; do
    for c in $CLIENT_COUNTS; do
      d=$(med "s${s}c${c}_drift" | xargs printf '%.0f'); h=$(med "s${s}c${c}_heap" | xargs printf '%.0f')
      r=$(ratio "$d" "$h")
      goal=$([ "$s" -ge 10 ] && echo 0.8 || echo 0.5)
      met=$(awk -v r="${r%x}" -v g="$goal" -v f="${FAILED[s${s}c${c}_drift]:-0}" \
        'BEGIN {print (r >= g && f == 0) ? "met" : "**missed**"}')
      echo "| $s | $c | $d | $h | $r | >= ${goal}x, none failing: $met | ${RETRIED[s${s}c${c}_drift]:-0} / ${FAILED[s${s}c${c}_drift]:-0} | ${RETRIED[s${s}c${c}_heap]:-0} / ${FAILED[s${s}c${c}_heap]:-0} |"
    done
  done
  echo
  for s in $SCALES; do
    echo "Balance invariant at scale $s (accounts = tellers = branches = history deltas): DriftDB ${CHECK["$s drift"]}, heap ${CHECK["$s public"]}."
  done
  echo
  printf 'Rounds (tps, in the order run): '
  for k in $(printf '%s\n' "${!ALL[@]}" | sort); do
    printf '%s: %s; ' "$k" "$(printf '%.0f ' ${ALL[$k]} | sed 's/ $//')"
  done
  echo
}
report >"$work/report.md"
echo
cat "$work/report.md"
doc_section "$DOC" tpcb "$work/report.md"
for k in "${!CHECK[@]}"; do
  case ${CHECK[$k]} in holds*) ;; *) die "the balance invariant is broken: $k ${CHECK[$k]}" ;; esac
done
