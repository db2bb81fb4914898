# Shared settings for DriftDB's scripts. Sourced, not run.
PGRX_VERSION=0.18.1
# Caches that outlive a clone: a second `make test` in a fresh clone reuses them.
DRIFTDB_CACHE=${DRIFTDB_CACHE:-/var/cache/driftdb}
PG18_PREFIX=${PG18_PREFIX:-/opt/driftdb/pg18}
PG15_CONFIG=${PG15_CONFIG:-/usr/lib/postgresql/15/bin/pg_config}
# Where the clusters started by `make run` and the tests live (owned by postgres).
DRIFTDB_RUN=${DRIFTDB_RUN:-/var/lib/driftdb}
export PATH="$HOME/.cargo/bin:$PATH"

say() { printf '\033[1m==> %s\033[0m\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }
as_root() { if [ "$(id -u)" = 0 ]; then "$@"; else sudo "$@"; fi; }
# Runs a command as the postgres system user, from a directory it can read.
# RUST_BACKTRACE is dropped so that a developer's shell setting does not add Rust
# backtraces to the errors the server sends to clients.
as_postgres() { (cd / && as_root env -u RUST_BACKTRACE runuser -u postgres -- "$@"); }
pg_bindir() { "$1" --bindir; }

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
  say "building and installing DriftDB $* for $("$pgc" --version)"
  cargo pgrx install "$@" --pg-config "$pgc" >/dev/null
}
