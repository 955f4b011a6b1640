#!/usr/bin/env bash
# The whole test suite, on a fresh machine: installs what the tests run
# against (redis-server, faketime, chromium and chromedriver), builds the binaries the integration tests
# start as separate processes, then runs every test. Each test starts its own
# redis-server on a free port (or uses SLUICE_TEST_REDIS_URL), or its own
# Redis Cluster where SLUICE_TEST_CLUSTER=1.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh
# python3 runs the fault suite's helpers (scripts/chaos/); the dashboard's
# tests drive Debian's headless Chromium through chromedriver.
ensure_packages redis-server faketime openssl python3 chromium
command -v chromedriver >/dev/null 2>&1 || apt_install chromium-driver

cargo build --workspace --bins --quiet
cargo test --workspace --no-fail-fast "$@"
# The limit, FIFO, crash and flow suites again, each test on a Redis Cluster
# of its own (3 primaries); tests/cluster.rs and tests/partitions.rs always
# run on one. The tests
# that restart a standalone server have nothing to add there.
SLUICE_TEST_CLUSTER=1 cargo test --no-fail-fast \
  --test limits --test keyed --test crash --test flows -- \
  --skip redis_restart --skip outage_longer --skip redis_coming_back
# The flow suite once more on a cluster with its namespaces in 3 partitions:
# keyed steps live away from their runs and cross through the hand-off.
SLUICE_TEST_CLUSTER=1 SLUICE_TEST_PARTITIONS=3 cargo test --no-fail-fast --test flows
