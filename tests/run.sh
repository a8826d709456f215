#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# The end-to-end tests start the exchange binary built beside them.
cargo build --workspace --bins

# Most end-to-end tests wait on sockets and timers, not the CPU: run more at once than there
# are cores.
if cargo nextest --version >/dev/null 2>&1; then
  cargo nextest run --workspace --no-fail-fast --test-threads 12
else
  cargo test --workspace --no-fail-fast -- --test-threads 12
fi
