#!/usr/bin/env bash
# Installs everything DriftDB needs on a Debian 12 machine, idempotently.
# Each step checks whether its result is already there and skips itself if so,
# so a second run takes seconds. Progress goes to stderr.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=scripts/lib.sh
. "$here/lib.sh"

APT_PACKAGES=(
  postgresql-15 postgresql-server-dev-15 postgresql-client-15 postgresql-15-periods
  libclang-dev clang sudo bison flex build-essential pkg-config
  libreadline-dev zlib1g-dev libssl-dev curl ca-certificates git
)

step_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "debian packages: present"; return; fi
  say "debian packages: installing ${missing[*]}"
  as_root apt-get update -qq
  # The Debian postgresql package creates and starts a 'main' cluster on 5432; DriftDB
  # uses its own clusters, so tell postgresql-common not to create one.
  if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  # --force-confold: keep the createcluster.conf written above when postgresql-common
  # arrives with its own, instead of asking.
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends \
    -o Dpkg::Options::=--force-confold "${missing[@]}" >/dev/null
}

step_cargo_pgrx() {
  if cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    say "cargo-pgrx $PGRX_VERSION: present"; return
  fi
  say "cargo-pgrx $PGRX_VERSION: building from crates.io (about 4 minutes on 2 cores)"
  cargo install cargo-pgrx --version "$PGRX_VERSION" --locked --quiet
}

step_pg18() {
  if [ -x "$PG18_PREFIX/bin/pg_config" ] && "$PG18_PREFIX/bin/pg_config" --version | grep -q "PostgreSQL 18"; then
    say "postgres 18: present in $PG18_PREFIX"; return
  fi
  local work="$DRIFTDB_CACHE/pg18-src"
  rm -rf "$work"; mkdir -p "$work/lists/partial"
  # A private deb-src list for Debian's 'sid' suite, reusing the archive address the
  # machine already uses; the system's apt configuration is not touched.
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "cannot find the Debian archive address in /etc/apt"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri sid main" > "$work/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  say "postgres 18: fetching Debian's source package"
  apt-get "${opts[@]}" update -qq
  (cd "$work" && apt-get "${opts[@]}" source --download-only -qq postgresql-18 >/dev/null)
  local orig
  orig=$(ls "$work"/postgresql-18_*.orig.tar.* | head -1)
  [ -n "$orig" ] || die "postgresql-18 source tarball not found"
  tar -C "$work" -xf "$orig"
  local src
  src=$(find "$work" -maxdepth 1 -type d -name 'postgresql-18*' | head -1)
  say "postgres 18: building $(basename "$src") into $PG18_PREFIX (about 3 minutes)"
  (cd "$src" && ./configure --prefix="$PG18_PREFIX" --without-icu --quiet >/dev/null \
     && make -s -j"$(nproc)" >/dev/null 2>&1 && make -s install >/dev/null)
  rm -rf "$work"
  "$PG18_PREFIX/bin/pg_config" --version >&2
}

step_pgrx_init() {
  local cfg="$HOME/.pgrx/config.toml"
  if [ -f "$cfg" ] && grep -q "pg15 = \"$PG15_CONFIG\"" "$cfg" && grep -q "pg18 = \"$PG18_PREFIX/bin/pg_config\"" "$cfg"; then
    say "cargo pgrx init: done before"; return
  fi
  say "cargo pgrx init: pg15 and pg18"
  cargo pgrx init --pg15 "$PG15_CONFIG" --pg18 "$PG18_PREFIX/bin/pg_config" >/dev/null
}

step_dirs() {
  # Clusters run as the 'postgres' system user (Postgres refuses root); their data and
  # sockets live under $DRIFTDB_RUN, owned by postgres.
  as_root mkdir -p "$DRIFTDB_RUN"
  as_root chown postgres:postgres "$DRIFTDB_RUN"
}

main() {
  mkdir -p "$DRIFTDB_CACHE"
  step_apt
  step_cargo_pgrx
  step_pg18
  step_pgrx_init
  step_dirs
}
main "$@"
