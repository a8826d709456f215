#!/usr/bin/env bash
# Runs the whole test suite, installing what it needs first.
set -euo pipefail
cd "$(dirname "$0")/.."

# Runs a command as root (through sudo unless already root).
as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Installs Debian/Ubuntu packages for the commands that are missing.
need() {
  local missing=()
  while [ $# -gt 0 ]; do
    command -v "$1" >/dev/null 2>&1 || missing+=("$2")
    shift 2
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  as_root apt-get update -qq
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}" >/dev/null
}

# quickfix-rs (the bundled FIX clients and the interop tests) builds QuickFIX C++ with cmake.
need cmake cmake c++ g++

# The reporting store's PostgreSQL backend is tested against a real server: Debian's, started
# when none is running, with a role of its own for the tests.
need pg_ctlcluster postgresql
if ! pg_isready -q -h 127.0.0.1 -p 5432; then
  cluster=$(pg_lsclusters --no-header | awk '$3 == 5432 { print $1 " " $2; exit }')
  if [ -z "$cluster" ]; then
    version=$(ls /usr/lib/postgresql | sort -n | tail -n 1)
    as_root pg_createcluster "$version" main --port 5432 >/dev/null
    cluster="$version main"
  fi
  # shellcheck disable=SC2086
  as_root pg_ctlcluster $cluster start
  for _ in $(seq 1 30); do pg_isready -q -h 127.0.0.1 -p 5432 && break; sleep 1; done
fi
as_root su postgres -c "psql -q -v ON_ERROR_STOP=1" >/dev/null <<'SQL'
SELECT 'CREATE ROLE exchange_test LOGIN CREATEDB PASSWORD ''exchange_test'''
WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'exchange_test')\gexec
SQL
export EXCHANGE_TEST_POSTGRES="postgres://exchange_test:exchange_test@127.0.0.1:5432/postgres"

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
