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
as_postgres() { (cd / && as_root runuser -u postgres -- "$@"); }
pg_bindir() { "$1" --bindir; }
