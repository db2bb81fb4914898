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
  python3 bzip2 xz-utils
)

# Every long step's output goes to a log of its own here; a failing step prints its tail.
SETUP_LOGS=${DRIFTDB_SETUP_LOGS:-$(cd "$here/.." && pwd)/target/setup-logs}

step_apt() {
  local missing=()
  for p in "${APT_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
  done
  if [ ${#missing[@]} -eq 0 ]; then say "debian packages: present"; return; fi
  say "debian packages: installing ${missing[*]} (log: $SETUP_LOGS/apt.log)"
  logged "$SETUP_LOGS/apt-update.log" as_root apt-get update
  # The Debian postgresql package creates and starts a 'main' cluster on 5432; DriftDB
  # uses its own clusters, so tell postgresql-common not to create one.
  if [ ! -f /etc/postgresql-common/createcluster.conf ]; then
    as_root mkdir -p /etc/postgresql-common
    echo "create_main_cluster = false" | as_root tee /etc/postgresql-common/createcluster.conf >/dev/null
  fi
  # --force-confold: keep the createcluster.conf written above when postgresql-common
  # arrives with its own, instead of asking.
  logged "$SETUP_LOGS/apt.log" as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y \
    --no-install-recommends -o Dpkg::Options::=--force-confold "${missing[@]}"
}

step_cargo_pgrx() {
  if cargo pgrx --version 2>/dev/null | grep -q "$PGRX_VERSION"; then
    say "cargo-pgrx $PGRX_VERSION: present"; return
  fi
  say "cargo-pgrx $PGRX_VERSION: building from crates.io (about 4 minutes on 2 cores; log: $SETUP_LOGS/cargo-pgrx.log)"
  logged "$SETUP_LOGS/cargo-pgrx.log" cargo install cargo-pgrx --version "$PGRX_VERSION" --locked
}

# The fuzz step of `make test` runs the engine's cargo-fuzz targets.
step_cargo_fuzz() {
  if cargo fuzz --version >/dev/null 2>&1; then say "cargo-fuzz: present"; return; fi
  say "cargo-fuzz: building from crates.io (about 2 minutes; log: $SETUP_LOGS/cargo-fuzz.log)"
  logged "$SETUP_LOGS/cargo-fuzz.log" cargo install cargo-fuzz --locked
}

# step_pg_source VERSION SUITE PREFIX: builds PostgreSQL VERSION from the upstream tarball in
# Debian's source package postgresql-VERSION of SUITE, into PREFIX, unless it is there.
step_pg_source() {
  local ver=$1 suite=$2 prefix=$3
  if [ -x "$prefix/bin/pg_config" ] && "$prefix/bin/pg_config" --version | grep -q "PostgreSQL $ver"; then
    say "postgres $ver: present in $prefix"; return
  fi
  local work="$DRIFTDB_CACHE/pg$ver-src" log="$SETUP_LOGS/pg$ver"
  rm -rf "$work"; mkdir -p "$work/lists/partial"
  # A private deb-src list for Debian's $suite suite, reusing the archive address the
  # machine already uses; the system's apt configuration is not touched.
  local uri
  uri=$(awk '/^URIs:/ {print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || true)
  [ -n "$uri" ] || uri=$(awk '/^deb / {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  [ -n "$uri" ] || die "cannot find the Debian archive address in /etc/apt"
  echo "deb-src [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $suite main" > "$work/sources.list"
  local opts=(-o "Dir::Etc::SourceList=$work/sources.list" -o "Dir::Etc::SourceParts=/dev/null"
              -o "Dir::State::Lists=$work/lists" -o "APT::Sandbox::User=root")
  say "postgres $ver: fetching Debian's source package postgresql-$ver ($suite; logs: $log-fetch.log, $log-source.log)"
  logged "$log-fetch.log" apt-get "${opts[@]}" update
  # apt checks what it downloads against the suite's signed index. The archive's mirror
  # may lag its index (seen 2026-12-07: trixie listed postgresql-17 17.12, whose files were
  # not on the mirror yet); then an older upload still on the mirror is taken, checked
  # against its uploader's signature instead.
  if ! (cd "$work" && apt-get "${opts[@]}" source --download-only "postgresql-$ver" \
          >"$log-source.log" 2>&1 9>&-); then
    say "postgres $ver: the version $suite lists is not on the mirror (see $log-source.log); looking for an older signed upload"
    fetch_signed_older "$ver" "$uri" "$work" "$(apt-cache "${opts[@]}" showsrc "postgresql-$ver" \
      | awk '/^Version:/ {print $2; exit}')" >>"$log-source.log" 2>&1 9>&- \
      || { tail -n 30 "$log-source.log" >&2
           die "postgres $ver: no source package could be fetched and checked; see $log-source.log"; }
  fi
  local orig
  orig=$(ls "$work"/postgresql-"$ver"_*.orig.tar.* 2>/dev/null | head -1)
  [ -n "$orig" ] || die "postgres $ver: no source tarball in Debian's postgresql-$ver ($suite); see $log-source.log"
  tar -C "$work" -xf "$orig"
  local src
  src=$(find "$work" -maxdepth 1 -type d -name "postgresql-$ver*" | head -1)
  say "postgres $ver: building $(basename "$src") into $prefix (about 3 minutes; log: $log-build.log)"
  # env -u: no make variables of an outer make may reach Postgres' (lib.sh also unsets them).
  (cd "$src" && logged "$log-build.log" env -u MAKELEVEL -u MAKEFLAGS -u MFLAGS -u MAKEOVERRIDES \
     sh -c "./configure --prefix='$prefix' --without-icu && make -j$(nproc) && make install")
  rm -rf "$work"
  "$prefix/bin/pg_config" --version >&2
}

# step_pgrx_init VERSION...: points cargo-pgrx at those Postgres installs (and at any other
# of ours already built, so that a later, narrower setup never drops one).
# fetch_signed_older VER URI WORK INDEXED: downloads into WORK the newest upload of
# postgresql-VER older than INDEXED (the version the suite's index lists) that the mirror
# at URI holds, and checks it: the .dsc's signature against the Debian developers' keyring
# (from the Debian package debian-keyring, which apt checks against the archive's keys),
# then the upstream tarball against the .dsc's SHA-256. Output goes to the caller's log.
fetch_signed_older() {
  local ver=$1 uri=$2 work=$3 indexed=$4 minor rev m r dsc base orig sum
  [ -n "$indexed" ] || { echo "no version of postgresql-$ver in the index"; return 1; }
  minor=${indexed#"$ver".}; minor=${minor%%-*}; rev=${indexed#*-}
  [[ "$minor" =~ ^[0-9]+$ ]] || { echo "cannot read the version $indexed"; return 1; }
  base="$uri/pool/main/p/postgresql-$ver"
  for ((m = minor - 1; m >= 0 && m >= minor - 6; m--)); do
    for r in "$rev" 1 2 3; do
      dsc="postgresql-${ver}_$ver.$m-$r.dsc"
      echo "trying $base/$dsc"
      if curl -fsS -o "$work/$dsc" "$base/${dsc//+/%2B}"; then break 2; fi
      rm -f "$work/$dsc"; dsc=
    done
  done
  [ -n "$dsc" ] || { echo "no older upload of postgresql-$ver on the mirror"; return 1; }
  if [ ! -f /usr/share/keyrings/debian-keyring.gpg ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends debian-keyring
  fi
  gpgv --keyring /usr/share/keyrings/debian-keyring.gpg "$work/$dsc" || { echo "bad signature on $dsc"; return 1; }
  orig="postgresql-${ver}_$ver.$m.orig.tar.bz2"
  sum=$(awk -v f="$orig" '/^Checksums-Sha256:/ {on = 1; next} /^[^ ]/ {on = 0} on && $3 == f {print $1}' "$work/$dsc")
  [ -n "$sum" ] || { echo "$dsc names no $orig"; return 1; }
  curl -fsS -o "$work/$orig" "$base/$orig" || return 1
  echo "$sum  $work/$orig" | sha256sum -c - || return 1
  echo "postgres $ver: using $ver.$m ($dsc, signature and checksum checked)"
}

step_pgrx_init() {
  local cfg="$HOME/.pgrx/config.toml" args=() v missing=0
  for v in $DRIFTDB_VERSIONS; do
    if [[ " $* " == *" $v "* ]]; then
      grep -q "pg$v = \"$(pg_config_for "$v")\"" "$cfg" 2>/dev/null || missing=1
    elif [ ! -x "$(pg_config_for "$v")" ]; then
      continue
    fi
    args+=("--pg$v" "$(pg_config_for "$v")")
  done
  if [ "$missing" = 0 ]; then say "cargo pgrx init: done before"; return; fi
  say "cargo pgrx init: ${args[*]} (log: $SETUP_LOGS/pgrx-init.log)"
  logged "$SETUP_LOGS/pgrx-init.log" cargo pgrx init "${args[@]}"
}

step_dirs() {
  # Clusters run as the 'postgres' system user (Postgres refuses root); their data and
  # sockets live under $DRIFTDB_RUN, owned by postgres.
  as_root mkdir -p "$DRIFTDB_RUN"
  as_root chown postgres:postgres "$DRIFTDB_RUN"
}

usage() {
  echo "usage: scripts/setup.sh [--versions \"15 17 18\"] [--no-fuzz]" >&2; exit 2
}

main() {
  local t0=$SECONDS versions=$DRIFTDB_VERSIONS fuzz=1 v
  while [ $# -gt 0 ]; do
    case $1 in
      --versions) [ $# -ge 2 ] || usage; versions=$2; shift 2 ;;
      --no-fuzz) fuzz=0; shift ;;
      *) usage ;;
    esac
  done
  for v in $versions; do pg_config_for "$v" >/dev/null; done
  mkdir -p "$DRIFTDB_CACHE" "$SETUP_LOGS"
  step_apt
  step_cargo_pgrx
  if [ "$fuzz" = 1 ]; then step_cargo_fuzz; fi
  # Debian 12 packages only PostgreSQL 15; 17 and 18 come from Debian 13's and sid's sources.
  for v in $versions; do
    case $v in
      17) step_pg_source 17 trixie "$PG17_PREFIX" ;;
      18) step_pg_source 18 sid "$PG18_PREFIX" ;;
    esac
  done
  # shellcheck disable=SC2086
  step_pgrx_init $versions
  step_dirs
  say "setup: done in $((SECONDS - t0))s"
}
main "$@"
