#!/usr/bin/env bash
# `make test`: installs what is missing, then runs every test on every Postgres version
# here, and ends with one line "N passed, N failed". Exits non-zero on any failure.
set -uo pipefail
here=$(cd "$(dirname "$0")" && pwd)
. "$here/lib.sh"
cd "$here/.."

VERSIONS=${DRIFTDB_TEST_VERSIONS:-$DRIFTDB_VERSIONS}
LOGS=target/test-logs
mkdir -p "$LOGS"
passed=0 failed=0 broken_steps=()
started=$(date +%s)

# count_results LOG: adds up the test counts that cargo test and pg_regress printed.
count_results() {
  python3 - "$1" <<'PY'
import re, sys
text = open(sys.argv[1], errors="replace").read()
p = f = 0
for m in re.finditer(r"test result: \w+\. (\d+) passed; (\d+) failed", text):
    p += int(m.group(1)); f += int(m.group(2))
for m in re.finditer(r"All (\d+) tests passed", text):
    p += int(m.group(1))
for m in re.finditer(r"(\d+) of (\d+) tests failed", text):
    f += int(m.group(1)); p += int(m.group(2)) - int(m.group(1))
# A fuzz target that ran its whole time without a crash.
p += len(re.findall(r"^Done \d+ runs in \d+ second", text, re.M))
print(p, f)
PY
}

# step NAME CMD...: runs one step with its output in $LOGS/NAME.log. A step that fails
# without reporting a failed test (a build error, say) counts as one failure.
step() {
  local name=$1; shift
  local log="$LOGS/$name.log" t0=$SECONDS rc
  say "$name"
  ( "$@" ) >"$log" 2>&1 9>&-; rc=$?
  read -r p f < <(count_results "$log")
  if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
  passed=$((passed + p)); failed=$((failed + f))
  if [ "$rc" -ne 0 ]; then
    broken_steps+=("$name")
    echo "--- $name failed (exit $rc); the end of $log:" >&2
    tail -40 "$log" >&2
  fi
  printf '    %s: %d passed, %d failed (%ds)\n' "$name" "$p" "$f" $((SECONDS - t0)) >&2
}

lint() {
  cargo fmt --all --check && cargo clippy --workspace --all-targets -- -D warnings &&
    cargo clippy -p driftdb-storage --all-targets --features faults -- -D warnings
}

regress() {
  local ver=$1 pgc bindir datadir port=$((5460 + $1 % 10)) out
  pgc=$(pg_config_for "$ver"); bindir=$("$pgc" --bindir)
  datadir="$DRIFTDB_RUN/regress-$ver"
  out=$(mktemp -d)
  as_root rm -rf "$datadir"
  cluster_init "$bindir" "$datadir" "$port" && cluster_start "$bindir" "$datadir" || return 1
  local tests rc
  tests=$(cd pg_test/sql && ls ./*.sql | sed 's|^\./||; s|\.sql$||' | sort)
  # shellcheck disable=SC2086
  "$("$pgc" --pkglibdir)/pgxs/src/test/regress/pg_regress" \
    --inputdir=pg_test --outputdir="$out" --bindir="$bindir" \
    --host=127.0.0.1 --port="$port" --user=postgres --dbname=driftdb_regress \
    --load-extension=driftdb $tests
  rc=$?
  [ -f "$out/regression.diffs" ] && cat "$out/regression.diffs"
  cluster_stop "$bindir" "$datadir"
  as_root rm -rf "$datadir" "$out"
  return $rc
}

e2e() {
  local ver=$1 pgc
  pgc=$(pg_config_for "$ver")
  DRIFTDB_PG_BINDIR=$("$pgc" --bindir) DRIFTDB_RUN="$DRIFTDB_RUN" \
    cargo test -p driftdb-e2e --no-fail-fast -- --test-threads=2
}

pg_lock
# Setup's own progress lines (what it installs or builds, and where each log is) show here
# as well: on a fresh machine it takes a while.
exec 8>&2
setup_with_progress() {
  bash "$here/setup.sh" --versions "$VERSIONS" 2>&1 | tee /dev/fd/8
  return "${PIPESTATUS[0]}"
}
step setup setup_with_progress
if [ ${#broken_steps[@]} -ne 0 ]; then echo "0 passed, 1 failed"; exit 1; fi
step lint lint
step engine cargo test -p driftdb-storage --features faults
# A short bounded run of every fuzz target of the engine's decoders.
step fuzz bash scripts/fuzz.sh "${DRIFTDB_FUZZ_SECONDS:-20}"
for v in $VERSIONS; do
  step "pgrx-test-pg$v" cargo pgrx test "pg$v" --runas postgres --pgdata "$DRIFTDB_RUN/pgrx-test"
done
# Installing replaces driftdb.so in place, under any server that has it loaded: stop the
# demo server of `make run` first (`make run` starts it again).
cluster_stop "$("$PG15_CONFIG" --bindir)" "$DRIFTDB_RUN/demo-15" 2>/dev/null || true
for v in $VERSIONS; do
  step "install-pg$v" install_driftdb "$(pg_config_for "$v")"
  step "pg_regress-pg$v" regress "$v"
  step "e2e-pg$v" e2e "$v"
done

say "make test took $(( $(date +%s) - started ))s; logs in $LOGS"
[ ${#broken_steps[@]} -eq 0 ] || echo "failed steps: ${broken_steps[*]}" >&2
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ] && [ ${#broken_steps[@]} -eq 0 ]
