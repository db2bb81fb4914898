# Shared parts of the side-by-side benchmarks. Sourced, not run.
# shellcheck shell=bash
# shellcheck source=scripts/lib.sh
. "$(dirname "${BASH_SOURCE[0]}")/../scripts/lib.sh"

BENCH_PORT=${DRIFTDB_BENCH_PORT:-5499}
# Set by bench_cluster once setup has installed PostgreSQL 15.
BENCH_BIN=

# bench_cluster NAME: a fresh release-built PG15 cluster with DriftDB, removed on exit.
# The release build is compiled before the machine-wide lock is taken (into the shared
# target directory, outside any Postgres), so the lock is held only to install and measure.
bench_cluster() {
  BENCH_DATA="$DRIFTDB_RUN/bench-$1"
  if cargo pgrx --version >/dev/null 2>&1; then
    say "building DriftDB (release) before taking the lock"
    local pkg
    pkg=$(mktemp -d)
    cargo pgrx package --pg-config "$PG15_CONFIG" --out-dir "$pkg" >/dev/null
    rm -rf "$pkg"
  fi
  pg_lock
  bash "$(dirname "${BASH_SOURCE[0]}")/../scripts/setup.sh" --versions 15 --no-fuzz
  BENCH_BIN=$("$PG15_CONFIG" --bindir)
  install_driftdb "$PG15_CONFIG" --release
  cluster_stop "$BENCH_BIN" "$BENCH_DATA" 2>/dev/null || true
  as_root rm -rf "$BENCH_DATA"
  cluster_init "$BENCH_BIN" "$BENCH_DATA" "$BENCH_PORT"
  cluster_start "$BENCH_BIN" "$BENCH_DATA"
  trap 'cluster_stop "$BENCH_BIN" "$BENCH_DATA"; as_root rm -rf "$BENCH_DATA"' EXIT
}

# bench_restart: stops and starts the benchmark cluster (a fast shutdown, so a checkpoint).
bench_restart() {
  cluster_stop "$BENCH_BIN" "$BENCH_DATA"
  cluster_start "$BENCH_BIN" "$BENCH_DATA"
}

psql_b() {
  "$BENCH_BIN/psql" -X -q -v ON_ERROR_STOP=1 -h 127.0.0.1 -p "$BENCH_PORT" -U postgres \
    -d postgres "$@"
}

# sql_ms SQL: runs SQL in a new session (one statement: its own transaction) and prints the
# time psql measured for it in ms (\timing: from sending the query to the end of its
# result, commit included; the connection is not counted).
sql_ms() {
  local out
  out=$(printf '\\timing on\n%s\n' "$1" | psql_b -f -) || die "failed: $1"
  awk '/^Time: / {t = $2} END {if (t == "") exit 1; print t}' <<<"$out" \
    || die "no timing for: $1"
}

median() {
  tr ' ' '\n' | grep -v '^$' | sort -g \
    | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'
}

# rotate N ITEMS...: the items rotated left by N, so that interleaved variants take turns
# at running first.
rotate() {
  local n=$1; shift
  local items=("$@")
  local i k=${#items[@]}
  for ((i = 0; i < k; i++)); do
    printf '%s\n' "${items[$(((i + n) % k))]}"
  done
}

# rounds SECONDS ROUNDS NAME=SCRIPT... : runs each pgbench script (prepared) for SECONDS,
# interleaved (the order rotates each round), ROUNDS times; adds every round's figure to
# ALL[NAME] (`median` gives the middle one), and adds up FAILED[NAME] (transactions that failed
# after their retries) and RETRIED[NAME]. Settings: PGB_CLIENTS (default 1), PGB_MODE (the
# query protocol, default prepared), PGB_OPTS (an
# array of further pgbench options), SESSION[NAME] (PGOPTIONS for that script's sessions,
# e.g. "-c driftdb.as_of=..."). pgbench's output goes to $BENCH_LOG.
declare -A ALL FAILED RETRIED SESSION
PGB_CLIENTS=1
PGB_MODE=prepared
PGB_OPTS=()
BENCH_LOG=${BENCH_LOG:-/dev/null}
rounds() {
  local secs=$1 n=$2; shift 2
  local r pair name file out v f t
  for r in $(seq 1 "$n"); do
    while read -r pair; do
      name=${pair%%=*}; file=${pair#*=}
      out=$(PGOPTIONS="${SESSION[$name]:-}" "$BENCH_BIN/pgbench" -n -M "$PGB_MODE" \
            -c "$PGB_CLIENTS" -T "$secs" "${PGB_OPTS[@]}" -h 127.0.0.1 -p "$BENCH_PORT" \
            -U postgres -f "$file" postgres 2>&1) \
        || { echo "$out" >&2; die "pgbench failed for $name"; }
      printf '== %s round %s\n%s\n' "$name" "$r" "$out" >>"$BENCH_LOG"
      v=$(awk '/^tps/ {print $3; exit}' <<<"$out")
      [ -n "$v" ] || { echo "$out" >&2; die "pgbench printed no tps for $name"; }
      f=$(awk '/^number of failed transactions:/ {print $5; exit}' <<<"$out")
      t=$(awk '/^number of transactions retried:/ {print $5; exit}' <<<"$out")
      FAILED[$name]=$(( ${FAILED[$name]:-0} + ${f:-0} ))
      RETRIED[$name]=$(( ${RETRIED[$name]:-0} + ${t:-0} ))
      say "round $r $name: $v tps${f:+, $f failed}${t:+, $t retried}"
      ALL[$name]="${ALL[$name]:-} $v"
    done < <(rotate "$((r - 1))" "$@")
  done
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a/b}'; }

# doc_section DOC NAME REPORT: replaces what lies between the markers `<!-- make bench NAME:
# begin -->` and `<!-- make bench NAME: end -->` in DOC (NAME empty: `<!-- make bench: begin
# -->`) with the file REPORT. Nothing when DOC is empty (print only).
doc_section() {
  local doc=$1 name=${2:+ $2} report=$3 tmp
  [ -n "$doc" ] || return 0
  local begin="<!-- make bench$name: begin -->" end="<!-- make bench$name: end -->"
  grep -qF "$begin" "$doc" && grep -qF "$end" "$doc" || die "$doc has no '$begin' ... '$end' markers"
  tmp=$(mktemp)
  awk -v b="$begin" -v e="$end" -v f="$report" '
    $0 == b {print; while ((getline l < f) > 0) print l; skip = 1; next}
    $0 == e {skip = 0}
    !skip {print}' "$doc" >"$tmp"
  cp "$tmp" "$doc"
  rm -f "$tmp"
  say "results written to $doc"
}
