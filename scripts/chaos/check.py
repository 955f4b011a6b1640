"""The judge of the chaos suite (scripts/chaos.sh): what the jobs' own logs say.

    check.py strays  --log EXEC_LOG --job-py PATH        pids of command processes still alive
    check.py busy    --log EXEC_LOG --worker PID --min-left-ms N
                     exit 0 when a command of that worker has at least N ms of planned work left
    check.py results --port P --prefix X --out FILE      dumps {prefix}:results (a tiny RESP client)
    check.py judge   --dir RUN_DIR [--report FILE] ...   the checks, a summary; exit 0 iff all hold

The log (see job.py and watcher.py) has, per process of an execution, a start
(S), heartbeats (H) every period, an end (E) when it ended normally, and an
X line written by the watcher when the process was seen gone.

How an execution's interval is measured, and why it is sound
------------------------------------------------------------
An execution is one command process (`cmd`) plus the grandchild it forked
(`gc`). Every process that ever logged S is counted, whether its worker
recorded it or not: that is the point (orphans of a killed worker, commands
of a hung one).

Each line a process writes proves it was alive at that instant, and a
process cannot die and come back. So a process was certainly alive during
[S, its last line]: its E when it ended normally (its last act before
exiting), else its last heartbeat. An execution is certainly live from the
cmd's S to the latest last line of its processes. The checks count these
intervals only, so an overlap they find is an overlap that happened: no
false alarm is possible, whatever the machine's load. (All instants are
CLOCK_MONOTONIC, one clock for every process of the machine.)

What this can miss is the time between a killed process's last heartbeat
and its death: at most a heartbeat period (50 ms) plus scheduling delays.
The watcher's X line bounds the death from above; overlaps that only appear
when killed processes are taken to live until their X are reported as
warnings ("possible"), not failures.

For a correct Sluice, the next S on a full key comes after the previous
execution's death: a slot is released only once its worker saw the process
exit (the ack comes after it), or at the expiry of a lease, which a worker
that cannot renew must not outlive with its commands.

Checks per key (max, window_s):
  * running at once: at no moment more than `max` live executions;
  * window_s > 0, starts: no more than `max` S in any window_s long interval.
    Sound although an S comes some time after its admission: of max+1 starts
    in [t, t+w), take the one admitted last; each other was admitted before
    it and holds its slot until at least its end + w > its S + w >= t + w,
    which is after that last admission: max slots were held then;
  * window_s > 0, slots: a slot is held from admission to window_s after the
    end (recorded after the process's last line), so the intervals
    [S, last line + window_s) never overlap more than `max` deep (5 ms are
    taken off for Redis's whole-ms timestamps).
Per job: no two of its executions live at once (a later attempt starts only
after the lease of the earlier one expired, and the earlier one must have
been stopped by then). Also: every enqueued job started and succeeded, its
stored result comes from its last attempt, which logged its end (fencing);
flow runs succeeded; nothing is running at the end; every key shows held 0,
waiting 0; no command process is alive once every job finished; no worker
exited on its own.

Per kill -9 of a worker (measured from the moment just before the signal,
the KILL action's at_us): every process of its executions not yet dead then,
and when the last one died. Its death is its E, else the watcher's X, else
its last heartbeat plus a period (the latest it can have died); the summary
gives count, median and max of these kill-to-death times. A process whose
last sign of life comes more than 1 s after the kill fails the run (nothing
a job started outlives its worker: within 1 s); one that may only have
lived that long, within the uncertainty of its death, is a warning.

On the hang of the proxied worker: its executions running when the hang
began that did not finish on their own (a process without an E: they were
stopped) are "fenced"; for each, the time from the hang's start to the
death of its last process (as above), and from that death to the start of
the same job's next attempt (positive: it died before that attempt started).
"""

import argparse
import bisect
import collections
import json
import os
import socket
import sys

TOL_NS = 5_000_000  # for the windowed slot check: Redis times are whole ms


# --------------------------------------------------------------------------
# small helpers

def read_jsonl(path):
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            line = line.strip()
            if line:
                try:
                    out.append(json.loads(line))
                except ValueError:
                    pass
    return out


def proc_alive(pid, *needles):
    """True when pid is a live (not zombie) process whose cmdline has every
    needle (the job script and this run's log: a pid reused by anything
    else, another chaos run's jobs included, never matches)."""
    try:
        with open("/proc/%d/cmdline" % pid, "rb") as f:
            cmd = f.read().replace(b"\0", b" ").decode(errors="replace")
        with open("/proc/%d/stat" % pid) as f:
            state = f.read().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return False
    return all(n in cmd for n in needles) and state not in ("Z", "X")


# --------------------------------------------------------------------------
# the exec log

class Proc:
    __slots__ = ("role", "job", "att", "pid", "parent", "key", "path", "ms",
                 "start", "start_real", "hb", "end", "x")

    def __init__(self, f):
        self.role, self.job, self.att = f[1], f[2], int(f[3])
        self.pid, self.parent = int(f[4]), int(f[5])
        self.key, self.path = f[8], f[9]
        self.ms = int(f[10]) if f[10].isdigit() else 0
        self.start = None
        self.start_real = None
        self.hb = None
        self.end = None
        self.x = None

    def finish(self, hb_ns):
        """(last sign of life, latest possible death, how) per the module doc."""
        if self.end is not None:
            return self.end, self.end, "logged its end"
        last = max(self.hb or self.start, self.start)
        if self.x is not None:
            return last, max(self.x, last), "killed (last heartbeat %.0f ms before the watcher saw it gone)" % (
                (self.x - last) / 1e6)
        return last, last + hb_ns, "killed (not seen by the watcher: death estimated from its heartbeat)"


def parse_log(path):
    procs = {}
    off = None  # real_ns - mono_ns
    bad = 0
    with open(path, errors="replace") as f:
        for line in f:
            fl = line.split()
            if len(fl) != 11 or fl[0] not in ("S", "H", "E", "X"):
                bad += 1
                continue
            try:
                mono, real = int(fl[6]), int(fl[7])
                ident = (fl[1], fl[2], int(fl[3]), int(fl[4]))
            except ValueError:
                bad += 1
                continue
            p = procs.get(ident)
            if p is None:
                p = procs[ident] = Proc(fl)
            k = fl[0]
            if k == "S":
                p.start, p.start_real = mono, real
                if off is None:
                    off = real - mono
            elif k == "H":
                p.hb = mono if p.hb is None else max(p.hb, mono)
            elif k == "E":
                p.end = mono
            else:
                p.x = mono
    return procs, off or 0, bad


class Exec:
    """One execution: a cmd process and its grandchild(ren)."""

    def __init__(self, cmd, gcs, hb_ns):
        self.cmd = cmd
        self.gcs = gcs
        self.job, self.att, self.key, self.path = cmd.job, cmd.att, cmd.key, cmd.path
        self.worker = cmd.parent
        self.start = cmd.start
        self.end, self.end_hi, self.how = cmd.finish(hb_ns)
        self.gc_how = None
        for g in gcs:
            lo, hi, how = g.finish(hb_ns)
            self.end = max(self.end, lo)
            self.end_hi = max(self.end_hi, hi)
            if g.end is None:
                self.gc_how = how
        self.ended = cmd.end is not None


def executions(procs, hb_ns):
    gcs = collections.defaultdict(list)
    orphans = []
    for p in procs.values():
        if p.role == "gc" and p.start is not None:
            gcs[(p.job, p.att, p.parent)].append(p)
    execs = []
    cmd_pids = set()
    for p in procs.values():
        if p.role == "cmd" and p.start is not None:
            execs.append(Exec(p, gcs.get((p.job, p.att, p.pid), []), hb_ns))
            cmd_pids.add((p.job, p.att, p.pid))
    for ident, gl in gcs.items():
        if ident not in cmd_pids:
            orphans.extend(gl)
    execs.sort(key=lambda e: e.start)
    return execs, orphans


# --------------------------------------------------------------------------
# sweeps

def sweep(intervals, limit):
    """intervals: [(start, end, item)]. Returns (deepest, episodes), an episode
    being (from, to, [items]) while more than `limit` were open. Ends sort
    before starts at the same instant (half-open intervals)."""
    ev = []
    for s, e, it in intervals:
        if e <= s:
            # Alive at the instant s only (it died before its first
            # heartbeat): it covers no stretch of time to overlap with.
            continue
        ev.append((s, 1, it))
        ev.append((e, 0, it))
    ev.sort(key=lambda x: (x[0], x[1]))
    open_ = {}
    deepest = 0
    episodes = []
    cur = None
    for t, kind, it in ev:
        if kind == 1:
            open_[id(it)] = it
        else:
            open_.pop(id(it), None)
        n = len(open_)
        deepest = max(deepest, n)
        if n > limit:
            if cur is None:
                cur = [t, None, dict(open_)]
            else:
                cur[2].update(open_)
        elif cur is not None:
            cur[1] = t
            episodes.append((cur[0], cur[1], list(cur[2].values())))
            cur = None
    return deepest, episodes


def most_starts(starts, window_ns):
    """Most starts in any half-open window of window_ns; and where."""
    starts = sorted(starts)
    best, at = 0, None
    for i, s in enumerate(starts):
        j = bisect.bisect_left(starts, s + window_ns)
        if j - i > best:
            best, at = j - i, s
    return best, at


# --------------------------------------------------------------------------
# measured figures: kill -9 to death, and the fencing of a hung worker

KILL_DEATH_LIMIT_NS = 1_000_000_000  # nothing a job started outlives its worker by more


def procs_of(e):
    return [e.cmd] + list(e.gcs)


def kill_deaths(execs, kills, off, hb_ns):
    """Per kill -9 [(real_ns, worker pid, name)]: the processes (cmd and
    grandchildren) of that worker's executions not yet dead at the kill,
    and the last one's death. Each entry's `last` and `certain` are
    (ns after the kill, Proc, how it ended) of the process that died last:
    `last` by its death as E, else the watcher's X, else its last heartbeat
    plus a period tell it (Proc.finish's latest possible death); `certain`
    by its last sign of life (it surely outlived the kill by that much).
    A process that logged its start only after the kill is counted too:
    its worker (which it names) had started it before dying."""
    by_worker = collections.defaultdict(list)
    for e in execs:
        by_worker[e.worker].append(e)
    out = []
    for t_kill, pid, name in kills:
        live = []
        for e in by_worker.get(pid, ()):
            for p in procs_of(e):
                lo, hi, how = p.finish(hb_ns)
                if hi + off <= t_kill:
                    continue  # ended, or died, before the kill
                live.append((hi + off - t_kill, lo + off - t_kill, p, how))
        out.append({
            "at": t_kill, "pid": pid, "name": name, "procs": len(live),
            "last": max(((x[0], x[2], x[3]) for x in live), key=lambda x: x[0], default=None),
            "certain": max(((x[1], x[2], x[3]) for x in live), key=lambda x: x[0], default=None),
        })
    return out


def hang_fenced(execs, by_job, hangs, hang_pids, proxied_pids, off, hb_ns):
    """Per hang of the proxied worker: its executions running when the hang
    began (started before it, not dead yet). Returns [(hang_start, exec,
    death_mono, how, next_exec or None, fenced)]: fenced when one of its
    processes did not log its end (it was stopped, not finished on its
    own); death is the latest possible death of its processes (E, X, or
    last heartbeat plus a period); next is the job's next attempt (the
    earliest-starting execution of a later attempt)."""
    out = []
    for (hs, _he), hpid in zip(hangs, hang_pids):
        pids = {hpid} if hpid is not None else proxied_pids
        for e in execs:
            if e.worker not in pids or e.start + off > hs:
                continue
            fins = [(p.finish(hb_ns), p) for p in procs_of(e)]
            (_, death, how), _p = max(fins, key=lambda x: x[0][1])
            if death + off <= hs:
                continue
            fenced = any(p.end is None for p in procs_of(e))
            later = [x for x in by_job.get(e.job, ()) if x.att > e.att]
            nxt = min(later, key=lambda x: x.start) if later else None
            out.append((hs, e, death, how, nxt, fenced))
    return out


def hang_line(hangs, rows, on_own):
    """The summary's line on the fencing of the hung worker."""
    if not hangs:
        return "none (the workload ended first)"
    if not rows:
        return "no execution of the hung worker was stopped by its fencing deadline (%s)" % (
            "it ran nothing when the hang began" if not on_own else
            "the one it ran when the hang began finished on its own" if on_own == 1 else
            "the %d it ran when the hang began finished on their own" % on_own)
    others = ("; %d other%s running then finished on %s own" % (
        on_own, "" if on_own == 1 else "s", "its" if on_own == 1 else "their")) if on_own else ""
    b = [r["died_before_next_start_ms"] for r in rows if r["died_before_next_start_ms"] is not None]
    a_ = [r["died_after_hang_start_ms"] / 1e3 for r in rows]
    n = len(rows)
    out = "%d fenced execution%s died " % (n, "" if n == 1 else "s")
    def span(xs, fmt):
        lo, hi = fmt % min(xs), fmt % max(xs)
        return lo if lo == hi else "%s..%s" % (lo, hi)

    if b:
        out += "%s ms before %s next attempt%s started%s" % (
            span(b, "%.0f"), "its" if n == 1 else "their", "" if n == 1 else "s",
            " (negative: after it)" if min(b) < 0 else "")
        if len(b) < n:
            out += ", %d with no next attempt" % (n - len(b))
    else:
        out += "with no next attempt of %s job%s" % ("its" if n == 1 else "their", "" if n == 1 else "s")
    out += " (fence at %s s after the hang began)" % span(a_, "%.1f")
    return out + others


def median(xs):
    xs = sorted(xs)
    n = len(xs)
    if not n:
        return None
    return xs[n // 2] if n % 2 else (xs[n // 2 - 1] + xs[n // 2]) / 2


# --------------------------------------------------------------------------
# actions of the harness

def at_of(t, kv):
    """When an action happened: its at_us (taken just before the signal was
    sent; the line itself is written after), else the line's time."""
    at = kv.get("at_us", "")
    return int(at) * 1000 if at.isdigit() else t


def parse_actions(path):
    """Lines: `<real_us> <KIND> k=v ...` -> [(real_ns, kind, {k: v})]."""
    out = []
    if not os.path.exists(path):
        return out
    with open(path) as f:
        for line in f:
            fl = line.split()
            if len(fl) < 2:
                continue
            kv = {}
            for w in fl[2:]:
                if "=" in w:
                    k, v = w.split("=", 1)
                    kv[k] = v
            try:
                out.append((int(fl[0]) * 1000, fl[1], kv))
            except ValueError:
                pass
    return out


# --------------------------------------------------------------------------
# subcommands

def cmd_strays(a):
    procs, _, _ = parse_log(a.log) if os.path.exists(a.log) else ({}, 0, 0)
    seen = set()
    for p in procs.values():
        if p.pid in seen:
            continue
        seen.add(p.pid)
        if proc_alive(p.pid, a.job_py, a.log):
            print(p.pid, p.role, p.job, p.att, p.key)
    return 0


def cmd_busy(a):
    """Reads only the log's tail: the starts of the last few seconds."""
    import time
    now = time.monotonic_ns()
    with open(a.log, "rb") as f:
        f.seek(0, 2)
        size = f.tell()
        f.seek(max(0, size - 1_000_000))
        tail = f.read().decode(errors="replace").splitlines()[1:]
    live = {}
    for line in tail:
        fl = line.split()
        if len(fl) != 11 or fl[1] != "cmd":
            continue
        if fl[0] == "S" and fl[5] == str(a.worker):
            live[fl[4]] = int(fl[6]) + int(fl[10]) * 1_000_000
        elif fl[0] in ("E", "X"):
            live.pop(fl[4], None)
    left = [(t - now) // 1_000_000 for t in live.values()]
    ok = [x for x in left if x >= a.min_left_ms]
    print("%d running, %d with >= %d ms left" % (len(left), len(ok), a.min_left_ms))
    return 0 if ok else 1


def resp_read(f):
    line = f.readline()
    if not line:
        raise EOFError("connection closed")
    t, rest = line[:1], line[1:-2]
    if t in (b"+", b"-", b":"):
        if t == b"-":
            raise RuntimeError(rest.decode())
        return rest.decode()
    if t == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)[:-2]
        return data.decode(errors="replace")
    if t == b"*":
        n = int(rest)
        return None if n < 0 else [resp_read(f) for _ in range(n)]
    raise RuntimeError("unexpected RESP reply %r" % line)


def resp_call(port, *args):
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
        req = b"*%d\r\n" % len(args)
        for x in args:
            x = x.encode()
            req += b"$%d\r\n%s\r\n" % (len(x), x)
        s.sendall(req)
        with s.makefile("rb") as f:
            return resp_read(f)


def crc16(data):
    """CRC16/XMODEM, as Redis Cluster hashes a key's tag."""
    crc = 0
    for b in data:
        crc ^= b << 8
        for _ in range(8):
            crc = ((crc << 1) ^ 0x1021) if crc & 0x8000 else (crc << 1)
            crc &= 0xFFFF
    return crc


def partition_tags(prefix, n):
    """The hash tags of a namespace's n partitions (crates/shared/src/partitions.rs)."""
    if n == 1:
        return [prefix]
    tags = []
    for i in range(n):
        lo, hi = i * 16384 // n, (i + 1) * 16384 // n
        tag, k = "%s#%d" % (prefix, i), 0
        while not lo <= crc16(tag.encode()) % 16384 < hi:
            k += 1
            tag = "%s#%d.%d" % (prefix, i, k)
        tags.append(tag)
    return tags


def cmd_results(a):
    out = {}
    for tag in partition_tags(a.prefix, a.partitions):
        flat = resp_call(a.port, "HGETALL", "{%s}:results" % tag) or []
        out.update({flat[i]: flat[i + 1] for i in range(0, len(flat) - 1, 2)})
    with open(a.out, "w") as f:
        json.dump(out, f)
    return 0


def cmd_judge(a):
    d = a.dir
    spec = json.load(open(os.path.join(d, "spec.json")))
    hb_ns = int(float(spec.get("heartbeat_s", 0.1)) * 1e9)
    actions = parse_actions(os.path.join(d, "actions.log"))
    t0_real = actions[0][0] if actions else 0
    procs, off, bad_lines = parse_log(os.path.join(d, "exec.log"))
    execs, orphan_gcs = executions(procs, hb_ns)

    def rel(mono):  # a mono_ns instant as seconds since the run's start
        return (mono + off - t0_real) / 1e9

    def rel_real(real_ns):
        return (real_ns - t0_real) / 1e9

    # -- what the harness did
    kills = [x for x in actions if x[1] == "KILL"]
    worker_of_pid = {}
    killed_at = {}
    for t, kind, kv in actions:
        if kind == "WORKER" and "pid" in kv:
            worker_of_pid[int(kv["pid"])] = kv.get("name", "?")
        if kind == "KILL" and "pid" in kv:
            killed_at[int(kv["pid"])] = at_of(t, kv)
    hangs = []
    hang_pids = []  # the hung worker's pid, per hang
    hang_start = None
    proxied_pids = {int(kv["pid"]) for t, k, kv in actions
                    if k == "WORKER" and kv.get("proxied") == "yes" and "pid" in kv}
    for t, kind, kv in actions:
        if kind == "HANG":
            hang_start = at_of(t, kv)
            hang_pid = int(kv["pid"]) if kv.get("pid", "").isdigit() else None
        elif kind == "RESUME" and hang_start is not None:
            hangs.append((hang_start, t))
            hang_pids.append(hang_pid)
            hang_start = None
    crashes = [(t, kv) for t, k, kv in actions if k == "CRASH"]
    redis_down = [t for t, k, _ in actions if k == "REDIS_DOWN"]
    redis_up = [t for t, k, _ in actions if k == "REDIS_UP"]
    t_end = max((t for t, _, _ in actions), default=t0_real)

    failures = []
    warnings = []

    def fail(msg):
        failures.append(msg)

    if crashes:
        fail("%d workers exited on their own: %s" % (len(crashes), "; ".join(
            "%s (pid %s) at t=%.3f s with status %s" % (kv.get("name"), kv.get("pid"), rel_real(t), kv.get("rc"))
            for t, kv in crashes[:5])))
    for t, k, kv in actions:
        if k == "ENQUEUE_FAILED":
            fail("batch %s could not be enqueued (see logs/enqueue.log)" % kv.get("batch"))

    # -- enqueued jobs
    enq = []  # (id, request)
    i = 0
    while True:
        bf = os.path.join(d, "batch-%03d.jsonl" % i)
        idf = os.path.join(d, "ids-%03d.txt" % i)
        if not os.path.exists(bf):
            break
        if os.path.exists(idf):
            reqs = read_jsonl(bf)
            ids = [x.strip() for x in open(idf) if x.strip()]
            if len(ids) != len(reqs):
                fail("batch %d: %d jobs sent but %d ids returned" % (i, len(reqs), len(ids)))
            enq.extend(zip(ids, reqs))
        else:
            warnings.append("batch %d was never enqueued" % i)
        i += 1
    flows_enq = [(j, r) for j, r in enq if r["path"] == "f/chaos/flow"]
    jobs_enq = [(j, r) for j, r in enq if r["path"] != "f/chaos/flow"]

    runs = {r["id"]: r for r in read_jsonl(os.path.join(d, "runs.jsonl"))}
    results_path = os.path.join(d, "results.json")
    results = json.load(open(results_path)) if os.path.exists(results_path) else None
    if results is None:
        warnings.append("the results could not be read from Redis: which attempt produced each result was not checked")

    by_job = collections.defaultdict(list)
    for e in execs:
        by_job[e.job].append(e)

    # -- nothing lost: every enqueued job started, and succeeded
    never_started = [j for j, _ in jobs_enq if j not in by_job]
    if never_started:
        fail("%d enqueued jobs never started (no START in the log), e.g. %s"
             % (len(never_started), ", ".join(never_started[:5])))
    status_count = collections.Counter()
    not_ok = []
    for j, r in jobs_enq:
        run = runs.get(j)
        st = run["status"] if run else "missing"
        status_count[st] += 1
        if st == "succeeded":
            continue
        if st == "failed" and run.get("attempt", 0) >= 10 and all(not e.ended for e in by_job.get(j, [])):
            warnings.append("job %s failed after exhausting its attempts, each killed" % j)
            continue
        not_ok.append((j, st, (run or {}).get("error")))
    if not_ok:
        fail("%d enqueued jobs did not succeed: %s" % (len(not_ok), "; ".join(
            "%s %s%s" % (j, st, (" (%s)" % err) if err else "") for j, st, err in not_ok[:5])))

    # -- the executions agree with Sluice's records (fencing)
    dup_attempts = []
    per_attempt = collections.Counter((e.job, e.att) for e in execs)
    for (j, att), n in per_attempt.items():
        if n > 1:
            dup_attempts.append((j, att, n))
    if dup_attempts:
        fail("%d attempts ran more than once (same job id and attempt number), e.g. %s"
             % (len(dup_attempts), ", ".join("%s attempt %d x%d" % x for x in dup_attempts[:5])))
    stale = []
    key_mismatch = []
    for j, r in jobs_enq:
        run = runs.get(j)
        if not run or run["status"] != "succeeded":
            continue
        ex = by_job.get(j, [])
        if ex and run.get("concurrency_key") and any(e.key != run["concurrency_key"] for e in ex):
            key_mismatch.append(j)
        if results is None:
            continue
        raw = results.get(j)
        try:
            res = json.loads(raw) if raw is not None else None
        except ValueError:
            res = None
        if not isinstance(res, dict) or res.get("job") != j:
            stale.append("%s: stored result %r is not this job's" % (j, raw))
            continue
        ra = res.get("attempt")
        if ra != run.get("attempt"):
            stale.append("%s: result of attempt %s recorded, but attempt %s is the job's last"
                         % (j, ra, run.get("attempt")))
        elif not any(e.att == ra and e.ended for e in ex):
            stale.append("%s: attempt %s succeeded but its command never logged its end" % (j, ra))
    if stale:
        fail("%d succeeded jobs have a result that no current, finished attempt produced: %s"
             % (len(stale), "; ".join(stale[:5])))
    if key_mismatch:
        fail("%d jobs ran under another key than Sluice recorded, e.g. %s"
             % (len(key_mismatch), ", ".join(key_mismatch[:5])))

    # -- flows
    flow_st = {f.get("id"): f for f in read_jsonl(os.path.join(d, "flows.jsonl"))}
    for j, _ in flows_enq:
        f = flow_st.get(j)
        if f is None:
            fail("flow run %s: no status" % j)
            continue
        bad = [s["id"] + "=" + str(s.get("status")) for s in f.get("steps", [])
               if s.get("status") != "succeeded"]
        if f.get("status") != "succeeded" or bad:
            fail("flow run %s is %s (steps: %s)" % (j, f.get("status"), ", ".join(bad) or "ok"))
    running = read_jsonl(os.path.join(d, "running.jsonl"))
    if running:
        fail("%d jobs or flow runs still running at the end, e.g. %s"
             % (len(running), ", ".join("%s %s" % (r["id"], r["path"]) for r in running[:5])))

    # -- limits state at the end
    limits = read_jsonl(os.path.join(d, "limits.jsonl"))
    if not limits and (jobs_enq or flows_enq):
        fail("`sluice limits --json` returned nothing at the end")
    for l in limits:
        if l.get("held") or l.get("waiting"):
            fail("key %s still shows held %s, waiting %s after every job finished and its window passed"
                 % (l["key"], l.get("held"), l.get("waiting")))
        sk = spec["keys"].get(l["key"])
        if sk and (sk["max"] != l.get("max") or abs(float(sk["window_s"]) - float(l.get("window_s", 0))) > 1e-9):
            fail("key %s: limits shows max %s window_s %s, the config says max %s window_s %s"
                 % (l["key"], l.get("max"), l.get("window_s"), sk["max"], sk["window_s"]))
    limit_of = {k: (v["max"], float(v["window_s"])) for k, v in spec["keys"].items()}
    for l in limits:
        limit_of.setdefault(l["key"], (l["max"], float(l["window_s"])))

    # -- stray command processes
    strays = [x.split() for x in open(os.path.join(d, "strays.txt"))] if os.path.exists(os.path.join(d, "strays.txt")) else []
    strays = [s for s in strays if s]
    if strays:
        fail("%d command processes were still alive after every job had finished "
             "(nothing should outlive its execution), e.g. %s"
             % (len(strays), "; ".join("pid %s (%s of job %s attempt %s, key %s)" % tuple(s[:5])
                                       for s in strays[:5])))
    if orphan_gcs:
        warnings.append("%d grandchild processes whose parent never logged a start" % len(orphan_gcs))
    if bad_lines:
        fail("%d malformed lines in the exec log (interleaved writes?)" % bad_lines)

    # -- the limits, from the executions
    by_key = collections.defaultdict(list)
    for e in execs:
        if e.key != "-":
            by_key[e.key].append(e)

    causes = collections.Counter()  # execution -> why it was still live

    def describe(e, t_from):
        w = e.worker
        name = worker_of_pid.get(w, "?")
        why = []
        if w in killed_at and killed_at[w] <= e.end + off:
            why.append("it outlived its worker, killed -9 at t=%.3f s" % rel_real(killed_at[w]))
        if w in proxied_pids:
            for hs, he in hangs:
                if e.start + off <= he and hs <= e.end + off:
                    why.append("its worker's Redis connection hung t=%.3f-%.3f s" % (rel_real(hs), rel_real(he)))
        causes[(e.job, e.att, e.cmd.pid)] = (
            "outlived its killed worker" if why and why[0].startswith("it outlived") else
            "ran on through its worker's Redis hang" if why else "started normally (the other side of an overlap)")
        gc = "; grandchild %s" % e.gc_how if e.gc_how else ""
        return ("job %s attempt %d: cmd pid %d on worker %s (pid %d), live t=%.3f-%.3f s, %s%s%s"
                % (e.job, e.att, e.cmd.pid, name, w, rel(e.start), rel(e.end), e.how, gc,
                   ("; " + "; ".join(why)) if why else ""))

    # -- one job, one execution at a time: an attempt is stopped before the
    # next one starts (after a lease expiry, the old attempt must be fenced
    # off), whatever the job's key, limited or not
    self_overlaps = []
    for j, ex in by_job.items():
        ex = sorted(ex, key=lambda e: e.start)
        for i in range(1, len(ex)):
            prev = max(ex[:i], key=lambda e: e.end)
            if ex[i].start < prev.end:
                self_overlaps.append((prev, ex[i]))
    self_overlaps.sort(key=lambda ab: ab[1].start)
    if self_overlaps:
        fail("%d times two attempts of one job ran at once (the older one was not stopped "
             "before the job ran again):\n%s%s" % (
                 len(self_overlaps), "\n".join(
                     "  for %.0f ms from t=%.3f s:\n      %s\n      %s" % (
                         (min(a_.end, b_.end) - b_.start) / 1e6, rel(b_.start),
                         describe(a_, b_.start), describe(b_, b_.start))
                     for a_, b_ in self_overlaps[:3]),
                 "" if len(self_overlaps) <= 3 else "\n  ... and %d more" % (len(self_overlaps) - 3)))

    key_rows = []
    overlap_fail_keys = []
    for key in sorted(set(by_key) | {l["key"] for l in limits}):
        ex = by_key.get(key, [])
        mx, win = limit_of.get(key, (None, 0.0))
        row = {"key": key, "max": mx, "window_s": win, "executions": len(ex),
               "jobs": len({e.job for e in ex}), "killed": sum(1 for e in ex if not e.ended)}
        if mx is None:
            fail("key %s: executions ran under a key that is not in the config nor in `sluice limits`" % key)
            key_rows.append(row)
            continue
        deep, eps = sweep([(e.start, e.end, e) for e in ex], mx)
        row["max_running"] = deep
        row["over_running"] = len(eps)
        deep_hi, eps_hi = sweep([(e.start, e.end_hi, e) for e in ex], mx)
        row["max_running_possible"] = deep_hi
        if eps_hi and not eps:
            t_a, t_b, items = eps_hi[0]
            warnings.append("key %s: %d possible overlap(s) within the uncertainty of a killed process's "
                            "death (between its last heartbeat and the watcher's notice), e.g. %d live "
                            "for %.0f ms from t=%.3f s" % (key, len(eps_hi), len(items),
                                                          (t_b - t_a) / 1e6, rel(t_a)))
        problems = []
        for t_a, t_b, items in eps:
            problems.append("  %d live at once (max %d) for %.0f ms from t=%.3f s:\n%s" % (
                len(items), mx, (t_b - t_a) / 1e6, rel(t_a),
                "\n".join("      " + describe(e, t_a) for e in sorted(items, key=lambda e: e.start))))
        if win > 0:
            wns = int(win * 1e9)
            ms, at = most_starts([e.start for e in ex], wns)
            row["max_starts_per_window"] = ms
            if ms > mx:
                in_w = [e for e in ex if at <= e.start < at + wns]
                problems.append("  %d executions started within %g s (max %d) from t=%.3f s:\n%s" % (
                    ms, win, mx, rel(at), "\n".join("      " + describe(e, at) for e in in_w)))
            sdeep, seps = sweep([(e.start, e.end + wns - TOL_NS, e) for e in ex], mx)
            row["max_slots_held"] = sdeep
            for t_a, t_b, items in seps[:3]:
                problems.append("  %d slots held at once (max %d; a slot is held until %g s after its end) "
                                "for %.0f ms from t=%.3f s:\n%s" % (
                                    len(items), mx, win, (t_b - t_a) / 1e6, rel(t_a),
                                    "\n".join("      " + describe(e, t_a) for e in items)))
        key_rows.append(row)
        if problems:
            overlap_fail_keys.append(key)
            shown = problems[:3]
            more = "" if len(problems) <= 3 else "\n  ... and %d more" % (len(problems) - 3)
            fail("key %s (max %d, window_s %g) went over its limit %d time(s):\n%s%s"
                 % (key, mx, win, len(problems), "\n".join(shown), more))

    # -- kill -9 to death: nothing a killed worker was running lives on
    kd = kill_deaths(execs, [(at_of(t, kv), int(kv["pid"]), kv.get("name", "?"))
                             for t, _, kv in kills if kv.get("pid", "").isdigit()], off, hb_ns)
    kd_ms = [k["last"][0] / 1e6 for k in kd if k["last"]]

    def proc_name(p_):
        return "%s pid %d of job %s attempt %d" % (p_.role, p_.pid, p_.job, p_.att)

    kd_over = [k for k in kd if k["certain"] and k["certain"][0] > KILL_DEATH_LIMIT_NS]
    if kd_over:
        fail("%d of %d kills -9 left a process of the killed worker alive more than %.0f s later "
             "(nothing a job started outlives its worker: within 1 s):\n%s%s" % (
                 len(kd_over), len(kd), KILL_DEATH_LIMIT_NS / 1e9, "\n".join(
                     "  %s (pid %d) killed at t=%.3f s, running %d processes (commands and grandchildren): %s alive until at least "
                     "%.0f ms after the kill (%s)" % (
                         k["name"], k["pid"], rel_real(k["at"]), k["procs"], proc_name(k["certain"][1]),
                         k["certain"][0] / 1e6, k["certain"][2])
                     for k in kd_over[:3]),
                 "" if len(kd_over) <= 3 else "\n  ... and %d more" % (len(kd_over) - 3)))
    for k in kd:
        if k not in kd_over and k["last"] and k["last"][0] > KILL_DEATH_LIMIT_NS:
            warnings.append("kill -9 of %s (pid %d) at t=%.3f s: %s may have lived up to %.0f ms after it, "
                            "within the uncertainty of its death (%s)" % (
                                k["name"], k["pid"], rel_real(k["at"]), proc_name(k["last"][1]),
                                k["last"][0] / 1e6, k["last"][2]))
    kill_fig = {
        "count": len(kd_ms),
        "median": round(median(kd_ms), 1) if kd_ms else None,
        "max": round(max(kd_ms), 1) if kd_ms else None,
        "kills_with_nothing_running": sum(1 for k in kd if not k["last"]),
        "over_1s": len(kd_over),
        "per_kill": [{"worker": k["name"], "pid": k["pid"], "t_s": round(rel_real(k["at"]), 3),
                      "processes": k["procs"],
                      "ms": round(k["last"][0] / 1e6, 1) if k["last"] else None,
                      "last": proc_name(k["last"][1]) if k["last"] else None,
                      "how": k["last"][2] if k["last"] else None} for k in kd],
    }

    # -- the hang: when w0's fenced executions died, against their next attempts
    hf_all = hang_fenced(execs, by_job, hangs, hang_pids, proxied_pids, off, hb_ns)
    hang_rows = []
    for hs, e, death, how, nxt, fenced in hf_all:
        if not fenced:
            continue
        hang_rows.append({
            "job": e.job, "attempt": e.att, "cmd_pid": e.cmd.pid,
            "worker": worker_of_pid.get(e.worker, "?"), "key": e.key,
            "started_s": round(rel(e.start), 3), "died_s": round(rel(death), 3), "death": how,
            "died_after_hang_start_ms": round((death + off - hs) / 1e6, 1),
            "next_attempt": nxt.att if nxt else None,
            "next_worker": worker_of_pid.get(nxt.worker, "?") if nxt else None,
            "next_started_s": round(rel(nxt.start), 3) if nxt else None,
            "died_before_next_start_ms": round((nxt.start - death) / 1e6, 1) if nxt else None,
        })
    hang_on_own = sum(1 for x in hf_all if not x[5])

    # -- figures
    n_exec = len(execs)
    n_jobs_exec = len(by_job)
    killed_execs = sum(1 for e in execs if not e.ended)
    rerun = n_exec - n_jobs_exec
    wait_rc = a.wait_rc
    if wait_rc not in (0, 1):
        fail("`sluice wait` did not see every job finish (exit %d: timeout or error)" % wait_rc)
    elif wait_rc == 1 and not not_ok:
        warnings.append("`sluice wait` exited 1 (some job failed or was cancelled)")
    total_s = (a.ended_us - a.started_us) / 1e6 if a.ended_us and a.started_us else None
    fault_fig = {
        "worker_kills": len(kills),
        "worker_crashes": len(crashes),
        "redis_restarts": len(redis_up),
        "redis_down_s": [round((u - dn) / 1e9, 3) for dn, u in zip(redis_down, redis_up)],
        "proxy_hangs_s": [round((he - hs) / 1e9, 3) for hs, he in hangs],
    }
    if a.faults:
        if not kills:
            warnings.append("no worker was killed (the workload ended first)")
        if not redis_up:
            warnings.append("Redis was not restarted (the workload ended first)")
        if not hangs:
            warnings.append("the proxied worker was not hung (the workload ended first)")

    # Of the executions named in a failure, how many outlived a killed
    # worker, ran on through a hang, or neither (their partner may have).
    cause_count = collections.Counter(causes.values())
    report = {
        "ok": not failures,
        "executions_in_violations_by_cause": dict(cause_count),
        "faults_injected": bool(a.faults),
        "jobs_enqueued": len(jobs_enq),
        "flow_runs": len(flows_enq),
        "statuses": dict(status_count),
        "executions": n_exec,
        "jobs_executed": n_jobs_exec,
        "reruns": rerun,
        "executions_without_end": killed_execs,
        "faults": fault_fig,
        "wait_exit": wait_rc,
        "total_s": total_s,
        "workload_s": round((t_end - t0_real) / 1e9, 3) if actions else None,
        "keys": key_rows,
        "keys_over_limit": overlap_fail_keys,
        "jobs_with_overlapping_attempts": len({b_.job for _, b_ in self_overlaps}),
        "stray_processes": len(strays),
        "kill_to_death_ms": kill_fig,
        "hang_fenced": hang_rows,
        "hang_finished_on_their_own": hang_on_own,
        "failures": failures,
        "warnings": warnings,
        "dir": d,
    }

    p = print
    p("")
    p("== chaos summary%s" % ("" if a.faults else " (no faults injected)"))
    p("jobs:        %d enqueued + %d flow runs; final: %s" % (
        len(jobs_enq), len(flows_enq), ", ".join("%d %s" % (n, s) for s, n in sorted(status_count.items()))))
    p("executions:  %d (of %d jobs, flow steps included); re-runs: %d; without a logged end (killed): %d"
      % (n_exec, n_jobs_exec, rerun, killed_execs))
    p("faults:      %d worker kills (kill -9), %d Redis restarts%s, %d proxy hangs%s"
      % (len(kills), len(redis_up),
         (" (down %s s)" % ", ".join(str(x) for x in fault_fig["redis_down_s"])) if redis_up else "",
         len(hangs), (" (%s s)" % ", ".join(str(x) for x in fault_fig["proxy_hangs_s"])) if hangs else ""))
    p("time:        %s total%s; sluice wait exit %d" % (
        ("%.1f s" % total_s) if total_s is not None else "?",
        (", workload %.1f s" % report["workload_s"]) if report["workload_s"] else "", wait_rc))
    if a.faults:
        nothing = kill_fig["kills_with_nothing_running"]
        if kd_ms:
            p("kill->death: %d kills, median %.0f ms, max %.0f ms%s%s" % (
                len(kd_ms), kill_fig["median"], kill_fig["max"],
                ("; %d more found nothing running" % nothing) if nothing else "",
                ("; %d over 1 s" % len(kd_over)) if kd_over else ""))
        else:
            p("kill->death: no kill found the worker running anything (%d kills)" % len(kd))
        p("hang:        %s" % hang_line(hangs, hang_rows, hang_on_own))
    p("")
    p("%-36s %4s %7s %6s %7s %12s %14s %11s" % ("key", "max", "window", "execs", "killed",
                                                 "max running", "max starts/w", "max slots"))
    for r in key_rows:
        mr = r.get("max_running", "-")
        flag = " <-- OVER" if r["key"] in overlap_fail_keys else ""
        p("%-36s %4s %7s %6d %7d %12s %14s %11s%s" % (
            r["key"], r["max"], "%gs" % r["window_s"], r["executions"], r["killed"], mr,
            r.get("max_starts_per_window", "-"), r.get("max_slots_held", "-"), flag))
    p("")
    for w in warnings:
        p("warning: %s" % w)
    if failures:
        if cause_count:
            p("executions named in the failures below: %s" % ", ".join(
                "%d %s" % (n, c) for c, n in cause_count.most_common()))
        p("FAILED: %d check(s) did not hold" % len(failures))
        for f in failures:
            p("FAIL: %s" % f)
    else:
        p("PASSED: no job lost, no key over its limit, every key free at the end")
    if a.report:
        with open(a.report, "w") as f:
            json.dump(report, f, indent=1)
    return 0 if not failures else 1


def main():
    ap = argparse.ArgumentParser()
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("strays")
    s.add_argument("--log", required=True)
    s.add_argument("--job-py", required=True)
    b = sub.add_parser("busy")
    b.add_argument("--log", required=True)
    b.add_argument("--worker", type=int, required=True)
    b.add_argument("--min-left-ms", type=int, required=True)
    r = sub.add_parser("results")
    r.add_argument("--port", type=int, required=True)
    r.add_argument("--prefix", required=True)
    r.add_argument("--partitions", type=int, default=1)
    r.add_argument("--out", required=True)
    j = sub.add_parser("judge")
    j.add_argument("--dir", required=True)
    j.add_argument("--report")
    j.add_argument("--wait-rc", type=int, required=True)
    j.add_argument("--faults", type=int, default=1)
    j.add_argument("--started-us", type=int, default=0)
    j.add_argument("--ended-us", type=int, default=0)
    a = ap.parse_args()
    return {"strays": cmd_strays, "busy": cmd_busy, "results": cmd_results, "judge": cmd_judge}[a.cmd](a)


if __name__ == "__main__":
    try:
        sys.exit(main())
    except SystemExit:
        raise
    except BaseException:
        import traceback
        traceback.print_exc()
        sys.exit(3)  # the checker broke: not a verdict
