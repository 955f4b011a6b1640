#!/usr/bin/env bash
# Sluice demo: one command from a fresh checkout to a running job queue.
#
# It builds the binaries, starts a private redis-server and three workers,
# enqueues a workload whose API calls are limited to 2 per second per tenant,
# shows the limit state in Redis while the jobs wait, and prints when each call
# started. Everything it starts is stopped again when it exits, however it exits.
#
#   scripts/demo.sh
#   SLUICE_DEMO_BIN_DIR=target/debug scripts/demo.sh   # use already-built binaries
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

say() { printf '\n== %s\n' "$*"; }

# --- prerequisites ----------------------------------------------------------

source scripts/lib/install.sh
ensure_packages redis-server python3

# Build unless the caller points at binaries that already exist.
if [ -n "${SLUICE_DEMO_BIN_DIR:-}" ]; then
    BIN="$(cd "$SLUICE_DEMO_BIN_DIR" && pwd)"
else
    say "building release binaries"
    # Name the packages: at the workspace root a bare `cargo build --bins`
    # builds only the root package (the test harness), which has no binaries.
    cargo build --release -p sluice-producer -p sluice-worker
    BIN="$PWD/target/release"
fi
for b in sluice sluice-worker; do
    [ -x "$BIN/$b" ] || { echo "demo.sh: $BIN/$b not found" >&2; exit 1; }
done

# --- cleanup: set before anything is started --------------------------------

TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-demo.XXXXXX")"
REDIS_PID=""
WORKER_PIDS=()

cleanup() {
    local rc=$?
    set +e
    # Workers first: on SIGTERM they drain, which needs Redis still up.
    if [ "${#WORKER_PIDS[@]}" -gt 0 ]; then
        kill -TERM "${WORKER_PIDS[@]}" 2>/dev/null
        # Give them 10 s to drain, then stop them hard.
        for _ in $(seq 100); do
            kill -0 "${WORKER_PIDS[@]}" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL "${WORKER_PIDS[@]}" 2>/dev/null
        wait "${WORKER_PIDS[@]}" 2>/dev/null
    fi
    if [ -n "$REDIS_PID" ]; then
        kill -TERM "$REDIS_PID" 2>/dev/null   # nothing to save: persistence is off
        wait "$REDIS_PID" 2>/dev/null
    fi
    # On failure, the worker logs are the first thing to look at.
    if [ "$rc" -ne 0 ]; then
        for f in "$TMP"/worker-*.log; do
            [ -f "$f" ] && { echo "--- tail of $(basename "$f")"; tail -n 20 "$f"; }
        done
    fi
    rm -rf "$TMP"
    exit "$rc"
}
trap cleanup EXIT
# Turn Ctrl-C / kill into a normal exit so the EXIT trap runs.
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

# --- a private redis-server ----------------------------------------------------

# Let the kernel pick a free port; make sure no Redis already answers on it.
PORT="$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')"
while redis-cli -p "$PORT" ping >/dev/null 2>&1; do PORT=$((PORT + 1)); done

say "starting redis-server on 127.0.0.1:$PORT (no persistence, dir $TMP)"
redis-server --bind 127.0.0.1 --port "$PORT" --dir "$TMP" \
    --save "" --appendonly no >"$TMP/redis.log" 2>&1 &
REDIS_PID=$!
for _ in $(seq 50); do
    redis-cli -p "$PORT" ping >/dev/null 2>&1 && break
    sleep 0.1
done
redis-cli -p "$PORT" ping >/dev/null || { echo "demo.sh: redis-server did not start" >&2; cat "$TMP/redis.log" >&2; exit 1; }

# --- config ------------------------------------------------------------------

CFG="$TMP/sluice.toml"
cat >"$CFG" <<EOF
redis_url = "redis://127.0.0.1:$PORT"
prefix = "demo"

[worker]
concurrency = 4

# An API that allows 2 calls per second per tenant: each call holds a slot
# from its start until 1 s after it ends, so at most 2 start in any second.
[scripts."f/demo/call_api"]
command = ["sh", "-c", "sleep 0.2; echo '{\"ok\":true}'"]
concurrency = { max = 2, window_s = 1, key = "\$workspace/api/\$args[tenant]" }

# No limit: these run as soon as a worker is free, whatever the API keys do.
[scripts."f/demo/report"]
command = ["sh", "-c", "sleep 0.1; cat"]

# A flow: list tenants, call the API for each (three at a time, under the
# same per-tenant limit as every other call), then report. One run at a time.
[flows."f/demo/sync_all"]
concurrency = { max = 1, window_s = 0 }

[[flows."f/demo/sync_all".steps]]
id = "list"
command = ["sh", "-c", "echo '{\"tenants\": [\"acme\", \"initech\", \"umbrella\"]}'"]

[[flows."f/demo/sync_all".steps]]
id = "call"
for_each = "\$results.list.tenants"
parallelism = 3
script = "f/demo/call_api"
args = { tenant = "\$item" }

[[flows."f/demo/sync_all".steps]]
id = "report"
script = "f/demo/report"
args = { calls = "\$previous_result" }
EOF
echo "config: $CFG"
sed 's/^/    /' "$CFG"

sluice() { "$BIN/sluice" --config "$CFG" "$@"; }

# --- workers -------------------------------------------------------------------

say "starting 3 workers (4 jobs each at once)"
for i in 1 2 3; do
    "$BIN/sluice-worker" --config "$CFG" >"$TMP/worker-$i.log" 2>&1 &
    WORKER_PIDS+=($!)
done
echo "worker pids: ${WORKER_PIDS[*]}"

# --- workload ------------------------------------------------------------------

say "enqueuing 10 calls for acme, 4 for globex, 5 reports"
{
    for _ in $(seq 10); do echo '{"path": "f/demo/call_api", "args": {"tenant": "acme"}}'; done
    for _ in $(seq 4);  do echo '{"path": "f/demo/call_api", "args": {"tenant": "globex"}}'; done
    for i in $(seq 5);  do echo "{\"path\": \"f/demo/report\", \"args\": {\"n\": $i}}"; done
} | sluice enqueue --batch - >"$TMP/ids"
echo "$(wc -l <"$TMP/ids") jobs enqueued"
FLOW_ID=$(sluice enqueue f/demo/sync_all)
echo "flow run f/demo/sync_all: $FLOW_ID"

# --- what is waiting, as seen with redis-cli --------------------------------------

# Run a redis-cli command (command, key, rest) and label it with the line to type.
rc() {
    printf "\$ redis-cli -p %s %s '%s' %s\n" "$PORT" "$1" "$2" "${*:3}"
    local out
    out="$(redis-cli -p "$PORT" "$@")"
    if [ -n "$out" ]; then sed 's/^/    /' <<<"$out"; else echo "    (empty)"; fi
}

# A few snapshots while the first calls run and the rest wait for slots.
echo "slots: <id>#<attempt> running, <id>#r reserved; score = Unix ms it frees (inf: not yet known)"
echo "wait: jobs queued behind running ones; delayed: jobs due at a known Unix ms"
for n in 1 2 3 4; do
    now="$(redis-cli -p "$PORT" TIME | python3 -c 'import sys; s, us = sys.stdin.read().split(); print(int(s) * 1000 + int(us) // 1000)')"
    say "snapshot $n  (Redis time now: $now ms)"
    for key in default/api/acme default/api/globex; do
        rc ZRANGE "{demo}:slots:$key" 0 -1 WITHSCORES   # slots held
        rc LRANGE "{demo}:wait:$key" 0 -1               # queued behind running jobs
    done
    rc ZRANGE "{demo}:delayed:default" 0 -1 WITHSCORES  # waiting for a known moment
    sleep 0.3
done

say "sluice wait --timeout-s 60"
# Exit status of wait: 0 all succeeded, 1 some failed, 4 timed out (2 is a usage error, 3 any other error).
status=0
sluice wait --timeout-s 60 || status=$?
if [ "$status" -ne 0 ]; then
    echo "demo.sh: sluice wait exited $status (1: a job failed, 3: an error, 4: timed out)" >&2
    exit 1
fi
echo "all jobs succeeded"

say "sluice status $FLOW_ID   (the flow run and its steps)"
sluice status "$FLOW_ID"

# --- when did each API call start? ------------------------------------------------

say "f/demo/call_api jobs, by start (ms after the first start)"
head -n 14 "$TMP/ids" | while read -r id; do sluice status "$id" --json; done >"$TMP/calls.jsonl"
python3 - "$TMP/calls.jsonl" <<'EOF'
import json, sys
from collections import defaultdict

jobs = [json.loads(line) for line in open(sys.argv[1])]
jobs.sort(key=lambda j: j["started_at"])
t0 = jobs[0]["started_at"]
print(f"{'id':<10} {'concurrency_key':<20} {'start':>7} {'end':>7}")
for j in jobs:
    print(f"{j['id'][-8:]:<10} {j['concurrency_key']:<20} "
          f"{j['started_at'] - t0:>7} {j['ended_at'] - t0:>7}")

# The limit, checked: the most starts of one key inside any 1000 ms.
starts = defaultdict(list)
for j in jobs:
    starts[j["concurrency_key"]].append(j["started_at"])
print()
for key, ts in sorted(starts.items()):
    most = max(sum(1 for u in ts if t <= u < t + 1000) for t in ts)
    print(f"{key}: {len(ts)} calls, at most {most} started in any 1 s (limit 2)")
EOF
