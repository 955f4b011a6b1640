#!/usr/bin/env bash
# Sluice benchmark.
#   scripts/bench.sh SCENARIO [--workers N] [--concurrency C] [--jobs J]
#                    [--redis-url URL] [--prefill] [--smoke] [--repeat N]
# SCENARIO: throughput, cmdstats, limited, many-keys, keyed, herd, cluster, backlog, idle, memory,
#           flow, runs, ui, all.
# Starts its own redis-server on a free port unless --redis-url is given, runs
# no-op Rust handlers in separate sluice-bench worker processes, prints a
# table and writes target/bench/SCENARIO.json. Exits non-zero when a limit was
# exceeded or a job lost.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/lib/install.sh

[ $# -ge 1 ] || { sed -n '2,9p' "$0"; exit 2; }
redis_url=""
args=()
while [ $# -gt 0 ]; do
  case "$1" in
    --redis-url) redis_url="$2"; shift 2 ;;
    *) args+=("$1"); shift ;;
  esac
done

cargo build --release --quiet -p sluice-bench
bench=target/release/sluice-bench

if [ -z "$redis_url" ]; then
  ensure_packages redis-server python3
  port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
  dir=$(mktemp -d)
  redis-server --port "$port" --bind 127.0.0.1 --save "" --appendonly no --dir "$dir" >"$dir/redis.log" 2>&1 &
  redis_pid=$!
  trap 'kill $redis_pid 2>/dev/null; wait $redis_pid 2>/dev/null; rm -rf "$dir"' EXIT
  redis_url="redis://127.0.0.1:$port"
  for _ in $(seq 100); do redis-cli -p "$port" ping >/dev/null 2>&1 && break; sleep 0.05; done
fi

echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)"
"$bench" run "${args[@]}" --redis-url "$redis_url"
