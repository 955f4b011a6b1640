"""The command every job of the chaos suite runs (see scripts/chaos.sh).

    python3 -I -S job.py EXEC_LOG WATCH_SOCKET [HEARTBEAT_S]

It is one *execution*: a process (role `cmd`) that forks a grandchild (role
`gc`), a separate process that does the "work" (sleeps `ms` from the job's
args, in steps) and would go on running if nobody killed it. The parent waits
for it, then ends and prints a JSON result. Both log their own life to the
shared EXEC_LOG, one os.write() per line on an O_APPEND descriptor (lines stay
far below 512 bytes, so lines never interleave):

    S|H|E role job attempt pid parent mono_ns real_ns key path ms

S = started, H = heartbeat (every HEARTBEAT_S, default 0.05 s), E = ended
normally. `parent` is the worker's pid for `cmd` and the cmd's pid for `gc`;
ms is the planned work (from the args). mono_ns is CLOCK_MONOTONIC (one clock
for every process of the machine, immune to clock steps: the checks use it);
real_ns is the wall clock (to line events up with the harness's actions).

A process killed with SIGKILL cannot log its end. So each process also opens
a connection to the watcher (watcher.py) and tells it who it is; the kernel
closes that connection when the process dies, however it dies, and the
watcher logs an X line with the moment it saw the close. The checker uses
its last sign of life (E, else its last H) to judge, and X to tell how
uncertain the moment of a death was (see check.py).
"""

import json
import os
import socket
import sys
import time

LOG = sys.argv[1]
WATCH = sys.argv[2]
HB = float(sys.argv[3]) if len(sys.argv) > 3 else 0.05

JOB = os.environ.get("SLUICE_JOB_ID") or "?"
ATT = os.environ.get("SLUICE_ATTEMPT") or "0"
KEY = os.environ.get("SLUICE_CONCURRENCY_KEY") or "-"
PATH = os.environ.get("SLUICE_PATH") or "?"
# Keys and paths of the chaos config have no spaces; keep the line parseable
# whatever happens.
KEY = KEY.replace(" ", "_")
PATH = PATH.replace(" ", "_")

fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)


MS = 0


def log(kind, role, parent):
    line = "%s %s %s %s %d %d %d %d %s %s %d\n" % (
        kind, role, JOB, ATT, os.getpid(), parent,
        time.monotonic_ns(), time.time_ns(), KEY, PATH, MS)
    os.write(fd, line.encode())


def register(role, parent):
    """Connects to the watcher; the socket must stay open until death."""
    try:
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.connect(WATCH)
        s.sendall(("%s %s %s %d %d %s %s %d\n" % (
            role, JOB, ATT, os.getpid(), parent, KEY, PATH, MS)).encode())
        return s
    except OSError:
        return None


def _proc(pid):
    """(cmdline, ppid) of a process."""
    with open("/proc/%d/cmdline" % pid, "rb") as f:
        cmd = f.read()
    with open("/proc/%d/stat" % pid) as f:
        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
    return cmd, ppid


def worker_pid():
    """The worker that runs us. It may have put a supervisor of its own
    between us (a fork of itself: same command line), so go up while the
    parent's parent has the same command line as the parent."""
    pid = os.getppid()
    try:
        cmd, ppid = _proc(pid)
        for _ in range(8):
            if ppid <= 1:
                break
            pcmd, pppid = _proc(ppid)
            if pcmd != cmd:
                break
            pid, ppid = ppid, pppid
    except (OSError, ValueError, IndexError):
        pass
    return pid


def main():
    global MS
    worker = worker_pid()
    # The args first (the worker writes them at once): the start line
    # carries the planned duration. Reading them takes microseconds.
    raw = sys.stdin.read()
    try:
        args = json.loads(raw) if raw.strip() else {}
    except ValueError:
        args = {}
    if not isinstance(args, dict):
        args = {}
    ms = args.get("ms", 300)
    if not isinstance(ms, (int, float)) or isinstance(ms, bool):
        ms = 300
    MS = max(int(ms), 0)
    work_s = MS / 1000.0
    log("S", "cmd", worker)
    watch = register("cmd", worker)
    me = os.getpid()

    child = os.fork()
    if child == 0:
        # The grandchild: its own watcher connection (the parent's copy of
        # the parent's must go, or the parent's death would go unseen while
        # this one lives), stdio away from the worker's pipes.
        try:
            if watch is not None:
                watch.close()
            null = os.open(os.devnull, os.O_RDWR)
            for n in (0, 1, 2):
                os.dup2(null, n)
            log("S", "gc", me)
            gwatch = register("gc", me)
            t0 = time.monotonic()
            while True:
                left = work_s - (time.monotonic() - t0)
                if left <= 0:
                    break
                time.sleep(min(HB, left))
                log("H", "gc", me)
            log("E", "gc", me)
            del gwatch
        finally:
            os._exit(0)

    # The parent: heartbeat while waiting for the grandchild.
    status = None
    while status is None:
        time.sleep(HB)
        pid, st = os.waitpid(child, os.WNOHANG)
        if pid == child:
            status = st
        log("H", "cmd", worker)
    if not (os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0):
        log("E", "cmd", worker)
        sys.stderr.write("grandchild %d ended abnormally: status %d\n" % (child, status))
        return 1
    log("E", "cmd", worker)
    result = {"job": JOB, "attempt": int(ATT), "pid": me}
    emit = args.get("emit")
    if isinstance(emit, dict):
        result.update(emit)
    try:
        sys.stdout.write(json.dumps(result) + "\n")
        sys.stdout.flush()
    except OSError:
        pass  # the worker is gone (killed): nobody reads our result
    return 0


if __name__ == "__main__":
    sys.exit(main())
