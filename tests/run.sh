#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Installs Debian/Ubuntu packages for the commands that are missing.
need() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  local sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null
}

# quickfix-rs (the bundled FIX clients and the interop tests) builds QuickFIX C++ with cmake.
need cmake cmake c++ g++

# The end-to-end tests start the exchange binary built beside them.
cargo build --workspace --bins

# A short fuzzing run of the FIX parser and the session state machine. cargo-fuzz needs
# nightly-only compiler flags, which RUSTC_BOOTSTRAP allows on the stable toolchain.
if ! cargo fuzz --version >/dev/null 2>&1; then
  cargo install --locked cargo-fuzz
fi
for target in parser session; do
  (cd gateway && RUSTC_BOOTSTRAP=1 cargo fuzz run "$target" -- -max_total_time=20 -print_final_stats=0 2>&1 | tail -n 3)
  echo "fuzz $target: no crash in 20 s"
done

# Most end-to-end tests wait on sockets and timers, not the CPU: run more at once than there
# are cores.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --test-threads 12
else
  cargo test --workspace --no-fail-fast -- --test-threads 12
fi
