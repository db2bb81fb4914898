#!/usr/bin/env bash
# Runs every cargo-fuzz target of the storage engine for a bounded time.
# Usage: scripts/fuzz.sh [seconds per target, default 30]
# cargo-fuzz needs nightly; on a stable toolchain RUSTC_BOOTSTRAP=1 unlocks the flags it uses.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
seconds=${1:-30}
export PATH="$HOME/.cargo/bin:$PATH"
export RUSTC_BOOTSTRAP=1

if ! cargo fuzz --version >/dev/null 2>&1; then
  echo "==> installing cargo-fuzz" >&2
  cargo install cargo-fuzz --locked --quiet
fi

cd "$here/../storage/fuzz"
for target in $(cargo fuzz list); do
  echo "==> fuzzing $target for ${seconds}s" >&2
  mkdir -p "corpus/$target"
  # -rss_limit_mb / -malloc_limit_mb: a decoder that allocates beyond what its input
  # justifies fails the run.
  cargo fuzz run "$target" "corpus/$target" -- \
    -max_total_time="$seconds" -rss_limit_mb=1024 -malloc_limit_mb=128 -max_len=65536
done
