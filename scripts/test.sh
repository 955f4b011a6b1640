#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests run
# against (redis-server, faketime, chromium and chromedriver), builds the binaries the integration tests
# start as separate processes, then runs every test. Each test starts its own
# redis-server on a free port (or uses SLUICE_TEST_REDIS_URL).
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh
# python3 runs the fault suite's helpers (scripts/chaos/); the dashboard's
# tests drive Debian's headless Chromium through chromedriver.
ensure_packages redis-server faketime openssl python3 chromium
command -v chromedriver >/dev/null 2>&1 || apt_install chromium-driver

cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast "$@"
