"""Writes the chaos suite's config files, limits spec and workload batches.

    python3 workload.py --out DIR --jobs N --batches B --flows F --seed S \
        --redis-port P --proxy-port Q --python PY --job-py JOB --log LOG \
        --watch SOCK [--lease-s 3] [--concurrency 8] [--heartbeat-s 0.05]

DIR/sluice.toml          config of the workers that talk to Redis directly
DIR/sluice-proxied.toml  the same, with redis_url through the proxy
DIR/spec.json            every concurrency key the workload can use, with
                         its max and window_s, plus the run's settings
DIR/batch-NNN.jsonl      the jobs, B batches of one {"path", "workspace",
                         "args"} a line, for `sluice enqueue --batch -`;
                         the flow runs go in the first batches
"""

import argparse
import json
import os
import random

PREFIX = "chaos"

# path -> (max, window_s, key template, concrete key names, share of the jobs)
# Key names are what the template resolves to for the args we generate.
SCRIPTS = {
    "f/chaos/pair": (2, 0, "pair/$args[k]", ["a", "b", "c", "d", "e", "f"], 0.34),
    "f/chaos/solo": (1, 0, "solo/$args[k]", ["a", "b", "c", "d", "e", "f"], 0.16),
    "f/chaos/rate": (3, 1, "rate/$args[k]", ["a", "b", "c", "d"], 0.12),
    "f/chaos/ws":   (3, 0, "$workspace/ws", ["alpha", "beta"], 0.14),
    "f/chaos/free": (None, None, None, ["-"], 0.24),
}
FLOW = "f/chaos/flow"
FLOW_ITEMS = 8


def key_of(path, name):
    mx, w, tmpl, names, share = SCRIPTS[path]
    if tmpl is None:
        return None
    if "$workspace" in tmpl:
        return tmpl.replace("$workspace", name)
    return tmpl.replace("$args[k]", name)


def duration(rng):
    # Mostly 0.1-1.5 s. One in twelve runs 2.5-6 s: longer than what is
    # left of a lease when its worker dies or hangs, so an execution that
    # is not stopped then outlives its slot (and shows in the checks).
    if rng.random() < 1 / 12:
        return rng.randint(2500, 6000)
    return rng.randint(100, 1500)


def toml_str(s):
    return json.dumps(s)


def config(a, redis_url):
    cmd = "[%s]" % ", ".join(toml_str(x) for x in
                             [a.python, "-I", "-S", a.job_py, a.log, a.watch, str(a.heartbeat_s)])
    out = [
        "# Written by scripts/chaos/workload.py for one chaos run.",
        "redis_url = %s" % toml_str(redis_url),
        "prefix = %s" % toml_str(PREFIX),
        "",
        "[worker]",
        "concurrency = %d" % a.concurrency,
        "lease_s = %g" % a.lease_s,
        "grace_s = 1",
        "",
    ]
    for path, (mx, w, tmpl, _, _) in SCRIPTS.items():
        out += ['[scripts.%s]' % toml_str(path),
                "command = %s" % cmd,
                "timeout_s = 60",
                "max_attempts = 10",
                "backoff_s = 0.2"]
        if mx is not None:
            out.append("concurrency = { max = %d, window_s = %g, key = %s }" % (mx, w, toml_str(tmpl)))
        out.append("")
    # A flow: one run at a time; `list` emits items, `each` runs f/chaos/pair
    # for each (its limit and keys, shared with the standalone jobs), `done`
    # is an inline step with a windowed limit on its default key.
    out += [
        "[flows.%s]" % toml_str(FLOW),
        "concurrency = { max = 1, window_s = 0 }",
        "",
        "[[flows.%s.steps]]" % toml_str(FLOW),
        'id = "list"',
        "command = %s" % cmd,
        "concurrency = { max = 1, window_s = 0 }",
        "max_attempts = 10",
        "backoff_s = 0.2",
        "",
        "[[flows.%s.steps]]" % toml_str(FLOW),
        'id = "each"',
        'for_each = "$results.list.items"',
        "parallelism = 4",
        'script = "f/chaos/pair"',
        'args = { k = "$item.k", ms = "$item.ms" }',
        "",
        "[[flows.%s.steps]]" % toml_str(FLOW),
        'id = "done"',
        "command = %s" % cmd,
        'args = { ms = 150, after = "$previous_result" }',
        "concurrency = { max = 1, window_s = 0.5 }",
        "max_attempts = 10",
        "backoff_s = 0.2",
        "",
    ]
    return "\n".join(out)


def main():
    ap = argparse.ArgumentParser()
    for name in ("out", "python", "job-py", "log", "watch"):
        ap.add_argument("--" + name, required=True)
    ap.add_argument("--jobs", type=int, required=True)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--flows", type=int, default=2)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--redis-port", type=int, required=True)
    ap.add_argument("--proxy-port", type=int, required=True)
    ap.add_argument("--lease-s", type=float, default=3)
    ap.add_argument("--concurrency", type=int, default=8)
    ap.add_argument("--heartbeat-s", type=float, default=0.05)
    a = ap.parse_args()
    rng = random.Random(a.seed)

    with open(os.path.join(a.out, "sluice.toml"), "w") as f:
        f.write(config(a, "redis://127.0.0.1:%d" % a.redis_port))
    with open(os.path.join(a.out, "sluice-proxied.toml"), "w") as f:
        f.write(config(a, "redis://127.0.0.1:%d" % a.proxy_port))

    keys = {}
    for path, (mx, w, tmpl, names, _) in SCRIPTS.items():
        for n in names:
            k = key_of(path, n)
            if k is not None:
                keys[k] = {"max": mx, "window_s": w, "path": path}
    keys["flow:default/" + FLOW] = {"max": 1, "window_s": 0, "path": FLOW}
    keys["default/script/%s/list" % FLOW] = {"max": 1, "window_s": 0, "path": FLOW + "#list"}
    keys["default/script/%s/done" % FLOW] = {"max": 1, "window_s": 0.5, "path": FLOW + "#done"}

    paths = list(SCRIPTS)
    weights = [SCRIPTS[p][4] for p in paths]
    jobs = []
    for i in range(a.jobs):
        path = rng.choices(paths, weights)[0]
        names = SCRIPTS[path][3]
        name = rng.choice(names)
        args = {"n": i, "ms": duration(rng)}
        workspace = "default"
        if path == "f/chaos/ws":
            workspace = name
        elif SCRIPTS[path][2] is not None:
            args["k"] = name
        jobs.append({"path": path, "workspace": workspace, "args": args})
    flows = []
    for i in range(a.flows):
        items = [{"k": rng.choice(SCRIPTS["f/chaos/pair"][3]), "ms": rng.randint(100, 800)}
                 for _ in range(FLOW_ITEMS)]
        flows.append({"path": FLOW, "workspace": "default",
                      "args": {"ms": 100, "flow": i, "emit": {"items": items}}})

    b = max(1, a.batches)
    batches = [[] for _ in range(b)]
    for i, j in enumerate(jobs):
        batches[i * b // max(1, len(jobs))].append(j)
    for i, fl in enumerate(flows):
        batches[min(i, b - 1)].insert(0, fl)
    for i, batch in enumerate(batches):
        with open(os.path.join(a.out, "batch-%03d.jsonl" % i), "w") as f:
            for j in batch:
                f.write(json.dumps(j) + "\n")

    with open(os.path.join(a.out, "spec.json"), "w") as f:
        json.dump({"prefix": PREFIX, "keys": keys, "lease_s": a.lease_s,
                   "heartbeat_s": a.heartbeat_s, "jobs": a.jobs, "flows": a.flows,
                   "batches": b, "seed": a.seed}, f, indent=1)


if __name__ == "__main__":
    main()
