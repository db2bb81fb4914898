# Shared settings for DriftDB's scripts. Sourced, not run.
PGRX_VERSION=0.18.1
# Caches that outlive a clone: a second `make test` in a fresh clone reuses them.
DRIFTDB_CACHE=${DRIFTDB_CACHE:-/var/cache/driftdb}
PG17_PREFIX=${PG17_PREFIX:-/opt/driftdb/pg17}
PG18_PREFIX=${PG18_PREFIX:-/opt/driftdb/pg18}
PG15_CONFIG=${PG15_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
# The Postgres versions `make test` runs on (15 from Debian's packages, 17 and 18 built
# from Debian's source packages; see README, "Postgres versions").
DRIFTDB_VERSIONS="15 17 18"
# Where the clusters started by `make run` and the tests live (owned by postgres).
DRIFTDB_RUN=${DRIFTDB_RUN:-/var/lib/driftdb}
export PATH="$HOME/.cargo/bin:$PATH"
# `make test`, `make run` and `make setup` run these scripts under make: its variables would
# reach the Postgres builds and other makes below (a nested make that believes it is a
# sub-make skips Postgres' generated headers), so they go, for every script.
unset MAKELEVEL MAKEFLAGS MFLAGS MAKEOVERRIDES GNUMAKEFLAGS

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Runs a command as the postgres system user, from a directory it can read.
# RUST_BACKTRACE is dropped so that a developer's shell setting does not add Rust
# backtraces to the errors the server sends to clients.
as_postgres() { (cd / && as_root env -u RUST_BACKTRACE runuser -u postgres -- "$@"); }
pg_bindir() { "$1" --bindir; }
# pg_config_for VERSION: the pg_config of one of $DRIFTDB_VERSIONS.
pg_config_for() {
  case $1 in
    15) echo "$PG15_CONFIG" ;;
    17) echo "$PG17_PREFIX/bin/pg_config" ;;
    18) echo "$PG18_PREFIX/bin/pg_config" ;;
    *) die "PostgreSQL $1 is not one of the versions DriftDB's scripts set up ($DRIFTDB_VERSIONS)" ;;
  esac
}

# logged LOG CMD...: runs CMD with its output (stdout and stderr) in the file LOG. When it
# fails, prints the last 30 lines of LOG and where the whole of it is, and returns its code.
logged() {
  local log=$1 rc=0; shift
  mkdir -p "$(dirname "$log")"
  "$@" >"$log" 2>&1 9>&- || rc=$?
  if [ "$rc" -ne 0 ]; then
    printf 'error: failed (exit %d): %s\n--- the last 30 lines of %s:\n' "$rc" "$*" "$log" >&2
    tail -n 30 "$log" >&2
    printf -- '--- (end of %s)\n' "$log" >&2
  fi
  return "$rc"
}

# pg_lock: holds an exclusive lock on this machine's Postgres installs until the calling
# script exits, so that two `make test`/`make run`/`make bench` in different checkouts on
# one machine never replace driftdb.so under each other's servers or share a port. The
# lock is fd 9: everything that starts a long-lived process closes it (`9>&-`), or that
# process would keep the lock after the script ends.
pg_lock() {
  exec 9>"${DRIFTDB_LOCK:-/tmp/driftdb-pg.lock}"
  if ! flock -n 9; then
    say "waiting for another DriftDB script using Postgres on this machine"
    flock 9
  fi
}
pg_unlock() { exec 9>&-; }

# --- clusters ---------------------------------------------------------------------------
# A cluster is a data directory under $DRIFTDB_RUN owned by postgres, listening on
# 127.0.0.1:<port> and on a socket in its own directory, with DriftDB preloaded.

# cluster_init BINDIR DATADIR PORT: creates the cluster if it does not exist yet.
cluster_init() {
  local bindir=$1 datadir=$2 port=$3
  if [ -f "$datadir/PG_VERSION" ]; then return; fi
  as_root mkdir -p "$datadir"
  as_root chown postgres:postgres "$datadir"
  as_root chmod 700 "$datadir"
  as_postgres "$bindir/initdb" -D "$datadir" -U postgres -A trust -E UTF8 --locale=C.UTF-8 >/dev/null
  as_postgres tee -a "$datadir/postgresql.conf" >/dev/null <<CONF
# added by DriftDB's scripts
listen_addresses = '127.0.0.1'
port = $port
unix_socket_directories = '$datadir'
shared_preload_libraries = 'driftdb'
logging_collector = off
CONF
}

# cluster_start BINDIR DATADIR: starts it unless it is running.
cluster_start() {
  local bindir=$1 datadir=$2
  if as_postgres "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then return; fi
  as_postgres "$bindir/pg_ctl" -D "$datadir" -l "$datadir/server.log" -w -t 60 start >/dev/null 9>&- \
    || { tail -20 "$datadir/server.log" >&2; die "could not start the cluster in $datadir"; }
}

cluster_stop() {
  local bindir=$1 datadir=$2
  if [ -f "$datadir/PG_VERSION" ] && as_postgres "$bindir/pg_ctl" -D "$datadir" status >/dev/null 2>&1; then
    as_postgres "$bindir/pg_ctl" -D "$datadir" -m fast -w stop >/dev/null
  fi
}

# install_driftdb PG_CONFIG [--release]: builds DriftDB and installs it into that Postgres
# (cargo-pgrx picks the pgNN feature from the pg_config it is given). Tests use the dev
# build, which compiles much faster; `make run` and benchmarks use --release. A running
# server keeps the library it preloaded until it restarts.
install_driftdb() {
  local pgc=$1; shift
  local log
  log="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)/target/setup-logs/install-$("$pgc" --version | tr -dc '0-9.' | cut -d. -f1)$(printf '%s' "$@" | tr -d ' ').log"
  say "building and installing DriftDB $* for $("$pgc" --version) (log: $log)"
  logged "$log" cargo pgrx install "$@" --pg-config "$pgc"
}
