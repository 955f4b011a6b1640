#!/usr/bin/env bash
# Sluice chaos suite: a real fleet, a limited workload, faults injected while
# it runs, and a verdict drawn from the jobs' OWN logs (not from Sluice's).
#
# It starts a private redis-server (AOF, fsync always), a death watcher, a
# TCP proxy, and N workers (worker w0 talks to Redis through the proxy), then
# enqueues the workload in batches spread over time. Meanwhile it
#   * kill -9s a random worker (never w0) every few seconds and starts a
#     replacement,
#   * hangs w0's Redis connection (the proxy stops forwarding, keeps the
#     sockets open) for 3 leases, at a moment w0 runs a command with more
#     than a lease of work left, then resumes it,
#   * crashes Redis once (kill -9: no shutdown, no final save), then starts
#     it again on the same dir and AOF (appendfsync always).
# Every job runs scripts/chaos/job.py: a process that forks a grandchild, both
# logging start, heartbeats and end to one append-only log; the watcher logs
# each one's death. scripts/chaos/check.py then checks: no job lost (each
# started and succeeded, with a result from its last attempt), no key ever
# over its max counting every process of every attempt (and, for windowed
# keys, no more than max starts per window), no two attempts of one job
# running at once, every key free at the end, no flow or job still running,
# no command process outliving its job, no process of a killed worker alive
# more than 1 s after its kill -9, no worker exiting on its own. The summary
# also gives two measured figures: kill -9 to the death of the last process
# the worker was running (count, median, max), and, for w0's executions
# stopped by the fencing deadline during the hang, when they died after the
# hang began and how long before their jobs' next attempts started.
#
#   scripts/chaos.sh [--jobs N] [--small] [--workers N] [--no-faults]
#                    [--emulate-bugs] [--seed S] [--report FILE]
#                    [--timeout-s S] [--keep] [--partitions N]
#
#   --small       ~300 jobs, faults compressed: under 90 s (for the test suite)
#   --no-faults   the same run without faults: must pass (no false alarms)
#   --emulate-bugs  a self-test of the checker, which must then FAIL: make a
#                 worker's commands outlive it as if nothing tied them to it
#                 (each kill -9 first kills the worker's supervisor processes,
#                 the forks of itself that lead its commands' process groups),
#                 and let w0's commands run on through the hang as if no
#                 fencing deadline stopped them (w0 and its supervisors are
#                 frozen with SIGSTOP for the hang, its commands are not)
#   --workers N   workers (default 4; w0 is the proxied one, never killed)
#   --seed S      the workload's and the faults' random choices (default:
#                 from the clock, or SLUICE_CHAOS_SEED); printed at the start
#   --timeout-s S how long `sluice wait` may take once all is enqueued
#                 (default 90 with --small, else 300)
#   --report FILE the summary as JSON
#   --keep        keep the run's directory (logs, configs) even when it passes
#                 (it is always kept when a check fails, and named)
#   --partitions N  split the namespace into N partitions (every process of
#                 the run gets SLUICE_PARTITIONS=N); the flow's keyed steps
#                 then cross between partitions
#   SLUICE_BIN_DIR=target/debug scripts/chaos.sh   use already-built binaries
#                 (else: cargo build --release -p sluice-producer -p sluice-worker)
#
# Exit status: 0 when every check held, 1 when one did not (each is named),
# 2 for bad usage, 3 when the harness itself could not run.
set -euo pipefail

ORIG_PWD="$PWD"
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

usage() { sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed '$d; s/^# \{0,1\}//'; }
die() { echo "chaos.sh: $*" >&2; exit 3; }
abs() { case "$1" in /*) echo "$1" ;; *) echo "$ORIG_PWD/$1" ;; esac; }

JOBS=""
SMALL=0
WORKERS=4
FAULTS=1
EMULATE=0
SEED="${SLUICE_CHAOS_SEED:-$(( $(date +%s) % 100000 ))}"
REPORT=""
KEEP=0
TIMEOUT_S=""
PARTITIONS=1
while [ $# -gt 0 ]; do
    case "$1" in
        --jobs) JOBS="${2:?--jobs needs a number}"; shift 2 ;;
        --jobs=*) JOBS="${1#*=}"; shift ;;
        --small) SMALL=1; shift ;;
        --workers) WORKERS="${2:?--workers needs a number}"; shift 2 ;;
        --workers=*) WORKERS="${1#*=}"; shift ;;
        --no-faults) FAULTS=0; shift ;;
        --emulate-bugs) EMULATE=1; shift ;;
        --seed) SEED="${2:?--seed needs a number}"; shift 2 ;;
        --seed=*) SEED="${1#*=}"; shift ;;
        --report) REPORT="$(abs "${2:?--report needs a file}")"; shift 2 ;;
        --report=*) REPORT="$(abs "${1#*=}")"; shift ;;
        --timeout-s) TIMEOUT_S="${2:?--timeout-s needs seconds}"; shift 2 ;;
        --timeout-s=*) TIMEOUT_S="${1#*=}"; shift ;;
        --keep) KEEP=1; shift ;;
        --partitions) PARTITIONS="${2:?--partitions needs a number}"; shift 2 ;;
        --partitions=*) PARTITIONS="${1#*=}"; shift ;;
        -h|--help) usage; exit 0 ;;
        *) echo "chaos.sh: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
for v in WORKERS SEED PARTITIONS; do
    [[ "${!v}" =~ ^[0-9]+$ ]] || { echo "chaos.sh: --${v,,} must be a whole number" >&2; exit 2; }
done
[ -z "$JOBS" ] || [[ "$JOBS" =~ ^[0-9]+$ && "$JOBS" -ge 1 ]] || { echo "chaos.sh: --jobs must be a number >= 1" >&2; exit 2; }
[ -z "$TIMEOUT_S" ] || [[ "$TIMEOUT_S" =~ ^[0-9]+$ ]] || { echo "chaos.sh: --timeout-s must be whole seconds" >&2; exit 2; }
[ "$FAULTS" -eq 1 ] || [ "$EMULATE" -eq 0 ] || { echo "chaos.sh: --emulate-bugs needs the faults" >&2; exit 2; }
[ "$WORKERS" -ge 2 ] || { echo "chaos.sh: --workers must be at least 2 (one proxied, one to kill)" >&2; exit 2; }

# --- the run's shape (times in ms from the workload's start) -------------------

LEASE_S=3
CONCURRENCY=10
if [ "$SMALL" -eq 1 ]; then
    JOBS="${JOBS:-300}"
    BATCHES=12; SPREAD_MS=11000; FLOWS=1
    KILL_FIRST_MS=2500; KILL_EVERY_MS=3500
    HANG_AT_MS=2000; HANG_WAIT_MAX_MS=8000
    RESTART_AT_MS=14000
    # Random kills keep landing while it waits: a max-1 key whose long job
    # is killed again and again needs room (one was killed 6 times running).
    WAIT_TIMEOUT_S="${TIMEOUT_S:-90}"
else
    JOBS="${JOBS:-2000}"
    BATCHES=12; SPREAD_MS=40000; FLOWS=3
    KILL_FIRST_MS=4000; KILL_EVERY_MS=5000
    HANG_AT_MS=6000; HANG_WAIT_MAX_MS=10000
    RESTART_AT_MS=30000
    WAIT_TIMEOUT_S="${TIMEOUT_S:-300}"
fi
# Several partitions: every process of the run splits the namespace (the
# environment reaches the workers and the command line); the flow's keyed
# steps then live away from their runs and cross through the hand-off.
if [ "$PARTITIONS" -gt 1 ]; then
    export SLUICE_PARTITIONS="$PARTITIONS"
fi
HANG_MS=$(( 3 * LEASE_S * 1000 ))
# A hang must catch w0 running a command that outlives the lease it holds.
HANG_MIN_LEFT_MS=$(( LEASE_S * 1000 + 300 ))
[ "$JOBS" -ge "$BATCHES" ] || BATCHES=1

# --- prerequisites ----------------------------------------------------------------

source scripts/lib/install.sh
ensure_packages redis-server
command -v python3 >/dev/null 2>&1 || die "python3 is needed"
# The interpreter itself, not a version manager's shim: jobs start it often.
PY="$(python3 -c 'import sys; print(sys.executable)')"
[ -x "$PY" ] || die "cannot find the python3 executable"

if [ -n "${SLUICE_BIN_DIR:-}" ]; then
    BIN="$(cd "$(abs "$SLUICE_BIN_DIR")" && pwd)" || die "SLUICE_BIN_DIR=$SLUICE_BIN_DIR is not a directory"
else
    echo "== building release binaries"
    cargo build --release -p sluice-producer -p sluice-worker
    BIN="$ROOT/target/release"
fi
for b in sluice sluice-worker; do
    [ -x "$BIN/$b" ] || die "$BIN/$b not found"
done

CHAOS="$ROOT/scripts/chaos"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/sluice-chaos.XXXXXX")"
mkdir -p "$TMP/logs" "$TMP/redis"
ACTIONS="$TMP/actions.log"
EXEC_LOG="$TMP/exec.log"
: >"$EXEC_LOG"
: >"$ACTIONS"

# --- bookkeeping, cleanup ------------------------------------------------------------

REDIS_PID=""
PROXY_PID=""
WATCH_PID=""
WAIT_PID=""
declare -a WPID=()
declare -a GEN=()
HUNG=0
FROZEN=""   # pids stopped by --emulate-bugs
LAST_WORKER_START_MS=0
T0US="${EPOCHREALTIME//[!0-9]/}"
START_US="$T0US"

now_us() { echo "${EPOCHREALTIME//[!0-9]/}"; }
elapsed_ms() { local u="${EPOCHREALTIME//[!0-9]/}"; echo $(( (u - T0US) / 1000 )); }
say() {
    local ms; ms=$(elapsed_ms)
    local sign=""; [ "$ms" -lt 0 ] && { sign="-"; ms=$(( -ms )); }
    printf '[%s%3d.%03ds] %s\n' "$sign" $(( ms / 1000 )) $(( ms % 1000 )) "$*"
}
# A line for the checker: wall-clock µs, what, key=value details.
act() { echo "${EPOCHREALTIME//[!0-9]/} $*" >>"$ACTIONS"; }

alive() { [ -n "$1" ] && kill -0 "$1" 2>/dev/null; }

stop_pid() { # pid [grace in tenths of a second]: TERM, wait, KILL
    local pid="$1" n="${2:-30}"
    alive "$pid" || { wait "$pid" 2>/dev/null || true; return 0; }
    kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq "$n"); do alive "$pid" || break; sleep 0.1; done
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
}

kill_strays() { # every command process of this run still alive, by pid
    local pids
    pids="$("$PY" "$CHAOS/check.py" strays --log "$EXEC_LOG" --job-py "$CHAOS/job.py" 2>/dev/null | awk '{print $1}')" || true
    [ -n "$pids" ] && kill -KILL $pids 2>/dev/null
    return 0
}

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM HUP
    alive "$PROXY_PID" && [ "$HUNG" -eq 1 ] && kill -USR2 "$PROXY_PID" 2>/dev/null
    [ -n "$FROZEN" ] && kill -CONT $FROZEN 2>/dev/null
    alive "$WAIT_PID" && stop_pid "$WAIT_PID" 5
    local w
    for w in "${WPID[@]}"; do alive "$w" && kill -TERM "$w" 2>/dev/null; done
    for w in "${WPID[@]}"; do stop_pid "$w" 30; done
    kill_strays
    stop_pid "$WATCH_PID" 10
    stop_pid "$PROXY_PID" 10
    stop_pid "$REDIS_PID" 50
    if [ "$rc" -eq 0 ] && [ "$KEEP" -eq 0 ]; then
        rm -rf "$TMP"
    else
        echo "chaos.sh: run directory kept: $TMP (exec.log, actions.log, logs/)" >&2
    fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM
trap 'exit 129' HUP

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

# --- Redis, watcher, proxy --------------------------------------------------------------

REDIS_PORT="$(free_port)"
while redis-cli -p "$REDIS_PORT" ping >/dev/null 2>&1; do REDIS_PORT=$((REDIS_PORT + 1)); done

start_redis() {
    redis-server --bind 127.0.0.1 --port "$REDIS_PORT" --dir "$TMP/redis" \
        --appendonly yes --appendfsync always --save "" \
        >>"$TMP/logs/redis.log" 2>&1 &
    REDIS_PID=$!
    local i
    for i in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && return 0
        alive "$REDIS_PID" || break
        sleep 0.05
    done
    tail -n 20 "$TMP/logs/redis.log" >&2
    die "redis-server did not start on port $REDIS_PORT"
}
start_redis

"$PY" "$CHAOS/watcher.py" --socket "$TMP/watch.sock" --log "$EXEC_LOG" >"$TMP/logs/watcher.log" 2>&1 &
WATCH_PID=$!
"$PY" "$CHAOS/proxy.py" --upstream-port "$REDIS_PORT" --port-file "$TMP/proxy.port" >"$TMP/logs/proxy.log" 2>&1 &
PROXY_PID=$!
for _ in $(seq 100); do
    [ -S "$TMP/watch.sock" ] && [ -s "$TMP/proxy.port" ] && break
    sleep 0.05
done
[ -S "$TMP/watch.sock" ] || die "the watcher did not start: $(cat "$TMP/logs/watcher.log")"
[ -s "$TMP/proxy.port" ] || die "the proxy did not start: $(cat "$TMP/logs/proxy.log")"
PROXY_PORT="$(cat "$TMP/proxy.port")"

"$PY" "$CHAOS/workload.py" --out "$TMP" --jobs "$JOBS" --batches "$BATCHES" --flows "$FLOWS" \
    --seed "$SEED" --redis-port "$REDIS_PORT" --proxy-port "$PROXY_PORT" --python "$PY" \
    --job-py "$CHAOS/job.py" --log "$EXEC_LOG" --watch "$TMP/watch.sock" \
    --lease-s "$LEASE_S" --concurrency "$CONCURRENCY"
CFG="$TMP/sluice.toml"
CFG_PROXIED="$TMP/sluice-proxied.toml"
sluice() { "$BIN/sluice" --config "$CFG" "$@"; }

echo "== sluice chaos: $JOBS jobs + $FLOWS flow runs, $WORKERS workers x $CONCURRENCY, lease ${LEASE_S}s, seed $SEED$([ "$FAULTS" -eq 0 ] && echo ', NO faults')$([ "$EMULATE" -eq 1 ] && echo ', EMULATED BUGS (must fail)')"
echo "   redis 127.0.0.1:$REDIS_PORT (AOF in $TMP/redis), w0 through proxy :$PROXY_PORT, binaries $BIN"
echo "   run directory $TMP"

# --- workers -------------------------------------------------------------------------

start_worker() {
    local i="$1" cfg="$CFG" proxied=no
    GEN[$i]=$(( ${GEN[$i]:-0} + 1 ))
    if [ "$i" -eq 0 ]; then cfg="$CFG_PROXIED"; proxied=yes; fi
    "$BIN/sluice-worker" --config "$cfg" >"$TMP/logs/worker-w$i.${GEN[$i]}.log" 2>&1 &
    WPID[$i]=$!
    LAST_WORKER_START_MS="$(elapsed_ms)"
    act WORKER "name=w$i" "pid=${WPID[$i]}" "proxied=$proxied"
}

T0US="$(now_us)"   # the workload's clock starts here
act START "jobs=$JOBS" "workers=$WORKERS" "faults=$FAULTS"
for i in $(seq 0 $(( WORKERS - 1 ))); do start_worker "$i"; done
say "started workers: $(for i in "${!WPID[@]}"; do printf 'w%s=%s ' "$i" "${WPID[$i]}"; done)(w0 through the proxy)"

# The worker's children that are forks of itself (same command line): the
# supervisors that lead its commands' process groups, in builds that have them.
supervisors_of() {
    local w="$1" c mine
    mine="$(tr '\0' ' ' <"/proc/$w/cmdline" 2>/dev/null)" || return 0
    for c in $(pgrep -P "$w" 2>/dev/null); do
        [ "$(tr '\0' ' ' <"/proc/$c/cmdline" 2>/dev/null)" = "$mine" ] && echo "$c"
    done
    return 0
}

kill_worker() {
    local i="$1" pid="${WPID[$1]}" kids="" note="" sups t_kill
    kids="$( (pgrep -P "$pid" 2>/dev/null || true) | wc -l)"
    if [ "$EMULATE" -eq 1 ]; then
        # Freeze it so it cannot react, then take its supervisors away first:
        # its commands are left running, tied to nothing.
        kill -STOP "$pid" 2>/dev/null || true
        sups="$(supervisors_of "$pid")"
        [ -n "$sups" ] && kill -KILL $sups 2>/dev/null
        note=" [emulated bug: its $(echo $sups | wc -w) supervisors killed first, commands left running]"
    fi
    # The moment of the kill itself (the KILL line is written after the
    # worker is reaped): kill-to-death latencies are measured from it.
    t_kill="${EPOCHREALTIME//[!0-9]/}"
    kill -KILL "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    act KILL "name=w$i" "pid=$pid" "commands=$kids" "at_us=$t_kill"
    start_worker "$i"
    say "kill -9 worker w$i (pid $pid, running $kids commands); replacement w$i pid ${WPID[$i]}$note"
}

restart_redis() {
    local old="$REDIS_PID" t_down
    act REDIS_DOWN "pid=$old"
    say "Redis: kill -9 (pid $old): a crash, recovered from its append-only file"
    kill -KILL "$old" 2>/dev/null || true
    wait "$old" 2>/dev/null || true
    t_down="$(now_us)"
    start_redis
    act REDIS_UP "pid=$REDIS_PID"
    say "Redis: started again on the same dir/AOF (pid $REDIS_PID), down $(( ($(now_us) - t_down) / 1000 )) ms after exit"
}

enqueue_batch() {
    local b; b="$(printf %03d "$1")"
    local n; n="$(wc -l <"$TMP/batch-$b.jsonl")"
    if sluice enqueue --batch - <"$TMP/batch-$b.jsonl" >"$TMP/ids-$b.part" 2>>"$TMP/logs/enqueue.log"; then
        mv "$TMP/ids-$b.part" "$TMP/ids-$b.txt"
        act ENQUEUE "batch=$b" "jobs=$n"
        say "enqueued batch $b: $n jobs"
    else
        act ENQUEUE_FAILED "batch=$b"
        say "enqueue of batch $b FAILED: $(tail -n 1 "$TMP/logs/enqueue.log")"
    fi
}

# --- the run ---------------------------------------------------------------------------

RANDOM="$SEED"
next_batch=0
next_kill="$KILL_FIRST_MS"
hang_state=armed      # armed -> hung -> done
hang_until=0
restarted=0
wait_deadline_ms=0
WAIT_RC=""
last_progress=0
[ "$FAULTS" -eq 1 ] || { hang_state=done; restarted=1; }
hard_deadline_ms=$(( SPREAD_MS + WAIT_TIMEOUT_S * 1000 + 30000 ))

start_wait() {
    local left=$(( (wait_deadline_ms - $(elapsed_ms)) / 1000 ))
    [ "$left" -ge 1 ] || left=1
    sluice wait --timeout-s "$left" >>"$TMP/logs/wait.log" 2>&1 &
    WAIT_PID=$!
}

while :; do
    now=$(elapsed_ms)
    # Batches, in order, spread over SPREAD_MS.
    while [ "$next_batch" -lt "$BATCHES" ] &&
          [ "$now" -ge $(( BATCHES > 1 ? next_batch * SPREAD_MS / (BATCHES - 1) : 0 )) ]; do
        enqueue_batch "$next_batch"
        next_batch=$((next_batch + 1))
        now=$(elapsed_ms)
    done
    # Then wait for all of them (again, if Redis was down under it).
    if [ "$next_batch" -ge "$BATCHES" ] && [ -z "$WAIT_RC" ]; then
        if [ -z "$WAIT_PID" ]; then
            wait_deadline_ms=$(( now + WAIT_TIMEOUT_S * 1000 ))
            say "all batches enqueued; sluice wait --timeout-s $WAIT_TIMEOUT_S"
            start_wait
        elif ! alive "$WAIT_PID"; then
            rc=0; wait "$WAIT_PID" || rc=$?
            if [ "$rc" -eq 3 ] && [ "$now" -lt "$wait_deadline_ms" ]; then
                say "sluice wait exited 3 ($(tail -n 1 "$TMP/logs/wait.log")): waiting again"
                start_wait
            else
                WAIT_RC="$rc"
                WAIT_PID=""
                say "sluice wait exited $rc: $(tail -n 1 "$TMP/logs/wait.log")"
                break
            fi
        fi
    fi
    # A worker that exits without being killed is a finding: note it, replace it.
    for i in "${!WPID[@]}"; do
        if ! alive "${WPID[$i]}"; then
            rc=0; wait "${WPID[$i]}" || rc=$?
            act CRASH "name=w$i" "pid=${WPID[$i]}" "rc=$rc"
            say "worker w$i (pid ${WPID[$i]}) exited by itself with status $rc: $(tail -n 1 "$TMP/logs/worker-w$i.${GEN[$i]}.log")"
            start_worker "$i"
        fi
    done
    if [ "$FAULTS" -eq 1 ]; then
        if [ "$now" -ge "$next_kill" ]; then
            kill_worker $(( 1 + RANDOM % (WORKERS - 1) ))
            next_kill=$(( next_kill + KILL_EVERY_MS ))
        fi
        if [ "$hang_state" = armed ] && [ "$now" -ge "$HANG_AT_MS" ]; then
            busy=""
            busy="$("$PY" "$CHAOS/check.py" busy --log "$EXEC_LOG" --worker "${WPID[0]}" --min-left-ms "$HANG_MIN_LEFT_MS")" && ok=1 || ok=0
            if [ "$ok" -eq 1 ] || [ "$now" -ge $(( HANG_AT_MS + HANG_WAIT_MAX_MS )) ]; then
                t_hang="${EPOCHREALTIME//[!0-9]/}"
                kill -USR1 "$PROXY_PID"
                HUNG=1
                hang_state=hung
                hang_until=$(( $(elapsed_ms) + HANG_MS ))
                act HANG "pid=${WPID[0]}" "name=w0" "at_us=$t_hang"
                say "proxy HANG: w0 (pid ${WPID[0]}) cut off from Redis for $(( HANG_MS / 1000 )) s, sockets left open; w0 has $busy"
                if [ "$EMULATE" -eq 1 ]; then
                    kill -STOP "${WPID[0]}" 2>/dev/null || true
                    FROZEN="$(supervisors_of "${WPID[0]}") ${WPID[0]}"
                    kill -STOP $FROZEN 2>/dev/null || true
                    say "  [emulated bug: w0 and its $(( $(echo $FROZEN | wc -w) - 1 )) supervisors frozen, its commands run on]"
                fi
            fi
        elif [ "$hang_state" = hung ] && [ "$now" -ge "$hang_until" ]; then
            [ -n "$FROZEN" ] && { kill -CONT $FROZEN 2>/dev/null; FROZEN=""; }
            kill -USR2 "$PROXY_PID"
            HUNG=0
            hang_state=done
            act RESUME "pid=${WPID[0]}"
            say "proxy RESUME: w0 (pid ${WPID[0]}) reaches Redis again"
        fi
        # Not while a new worker may still be starting: sluice-worker exits
        # (status 3) when Redis is unreachable at its startup, while a
        # running one reconnects; the restart is there to test the latter.
        if [ "$restarted" -eq 0 ] && [ "$now" -ge "$RESTART_AT_MS" ] && [ "$hang_state" != hung ] &&
           [ "$now" -ge $(( LAST_WORKER_START_MS + 3000 )) ]; then
            restart_redis
            restarted=1
        fi
    fi
    if [ "$now" -ge $(( last_progress + 10000 )) ] && [ -s "$TMP/logs/wait.log" ]; then
        last_progress="$now"
        say "progress: $(tail -n 1 "$TMP/logs/wait.log")"
    fi
    if [ "$now" -ge "$hard_deadline_ms" ]; then
        say "the run did not end in time"
        WAIT_RC=4
        break
    fi
    sleep 0.2
done

if [ "$HUNG" -eq 1 ]; then
    [ -n "$FROZEN" ] && { kill -CONT $FROZEN 2>/dev/null; FROZEN=""; }
    kill -USR2 "$PROXY_PID"; HUNG=0; act RESUME "pid=${WPID[0]}"; say "proxy RESUME (the workload ended during the hang)"
fi
act WAIT_DONE "rc=$WAIT_RC"

# --- afterwards: what is still alive, and what Sluice says --------------------------------

# Every job has finished: any command process still alive outlived its job.
"$PY" "$CHAOS/check.py" strays --log "$EXEC_LOG" --job-py "$CHAOS/job.py" >"$TMP/strays.txt" || true
if [ -s "$TMP/strays.txt" ]; then
    say "$(wc -l <"$TMP/strays.txt") command processes still alive after every job finished; giving them 6 s"
    for _ in $(seq 60); do
        "$PY" "$CHAOS/check.py" strays --log "$EXEC_LOG" --job-py "$CHAOS/job.py" 2>/dev/null | grep -q . || break
        sleep 0.1
    done
    kill_strays
fi

# Windows pass; then every key must be free.
settle_ms=$(( (LEASE_S + 1 + 3) * 1000 ))
t_settle=$(elapsed_ms)
while :; do
    if sluice limits --json >"$TMP/limits.jsonl" 2>>"$TMP/logs/cli.log" &&
       ! grep -Eq '"(held|waiting)":[1-9]' "$TMP/limits.jsonl"; then
        break
    fi
    [ $(( $(elapsed_ms) - t_settle )) -ge "$settle_ms" ] && break
    sleep 0.5
done
sluice runs --json --limit 10000000 >"$TMP/runs.jsonl" 2>>"$TMP/logs/cli.log" || say "sluice runs failed: $(tail -n 1 "$TMP/logs/cli.log")"
sluice runs --status running --json --limit 1000 >"$TMP/running.jsonl" 2>>"$TMP/logs/cli.log" || true
: >"$TMP/flows.jsonl"
for f in "$TMP"/ids-*.txt; do
    [ -f "$f" ] || continue
    b="${f##*/ids-}"; b="${b%.txt}"
    paste -d ' ' "$f" <(grep -o '"path": "[^"]*"' "$TMP/batch-$b.jsonl" | cut -d'"' -f4) |
        awk '$2 == "f/chaos/flow" {print $1}'
done | while read -r id; do
    sluice status "$id" --json >>"$TMP/flows.jsonl" 2>>"$TMP/logs/cli.log" || true
done
"$PY" "$CHAOS/check.py" results --port "$REDIS_PORT" --prefix chaos --partitions "$PARTITIONS" --out "$TMP/results.json" ||
    say "could not read the results from Redis"

# --- stop the fleet, then judge -------------------------------------------------------------

for w in "${WPID[@]}"; do kill -TERM "$w" 2>/dev/null || true; done
for w in "${WPID[@]}"; do stop_pid "$w" 30; done
kill_strays
sleep 0.3   # the watcher notes the last deaths
stop_pid "$WATCH_PID" 10
act END
END_US="$(now_us)"

rc=0
"$PY" "$CHAOS/check.py" judge --dir "$TMP" --wait-rc "${WAIT_RC:-4}" --faults "$FAULTS" \
    --started-us "$START_US" --ended-us "$END_US" ${REPORT:+--report "$REPORT"} || rc=$?
[ "$rc" -le 1 ] || die "the checker itself failed (status $rc)"
exit "$rc"
