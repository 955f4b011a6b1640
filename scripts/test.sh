#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests run
# against (redis-server, faketime), builds the binaries the integration tests
# start as separate processes, then runs every test. Each test starts its own
# redis-server on a free port (or uses SLUICE_TEST_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh
# python3 runs the fault suite's helpers (scripts/chaos/).
ensure_packages redis-server faketime openssl python3

cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast "$@"
