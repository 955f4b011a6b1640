#!/usr/bin/env python3
"""Structural checks of the container setup, without a Docker engine.

Usage: lint_deploy.py [REPO_ROOT]   (run by scripts/lint-deploy.sh)

Reads docker-compose.yml, the Dockerfile it builds, .dockerignore, the
Cargo manifests and the config the image ships, and checks that they fit
together:
- compose: services well formed, build context and Dockerfile present,
  depends_on and named volumes declared, published ports exposed by the
  image, no fixed host port on a replicated service, a stop grace period
  longer than the workers' grace_s;
- Dockerfile: multi-stage, dependencies built in a layer of their own (only
  manifests copied before the first `cargo build`, a stub at every target
  path, sources touched before the real build), a non-root USER, a
  HEALTHCHECK whose tool is installed and whose port is exposed, an
  ENTRYPOINT, every COPY source present and not excluded by .dockerignore,
  binaries copied from the build that the manifests declare;
- the shipped config: metrics_addr on all interfaces, on the exposed port;
- .dockerignore: keeps target/ and .git out of the build context.

Prints one line per problem, naming the file and line, and exits 1 if any.
"""

import glob
import os
import re
import shlex
import sys
import tomllib

import yaml

ROOT = os.path.abspath(sys.argv[1] if len(sys.argv) > 1 else ".")
COMPOSE = "docker-compose.yml"
problems = []


def problem(where, what):
    problems.append(f"{where}: {what}")


def rel(path):
    return os.path.relpath(path, ROOT)


def read_toml(path):
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError) as e:
        problem(rel(path), f"cannot be read as TOML: {e}")
        return None


# --- .dockerignore ----------------------------------------------------------


def ignore_regex(pattern):
    """A .dockerignore pattern (Go filepath.Match syntax plus `**`) as a regex."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            i += 2
            if pattern.startswith("/", i):
                i += 1
                out += "(?:.*/)?"
            else:
                out += ".*"
            continue
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "[":
            j = pattern.find("]", i + 1)
            if j < 0:
                out += re.escape(c)
            else:
                cls = pattern[i + 1 : j].replace("\\", "\\\\")
                out += "[" + cls + "]"
                i = j
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        else:
            out += re.escape(c)
        i += 1
    return re.compile("^" + out + "$")


def load_dockerignore(context):
    rules = []
    path = os.path.join(context, ".dockerignore")
    if not os.path.exists(path):
        return None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            negate = line.startswith("!")
            if negate:
                line = line[1:].strip()
            line = os.path.normpath(line).lstrip("/")
            rules.append((negate, ignore_regex(line)))
    return rules


def excluded(path, rules):
    """Whether a context-relative path is left out of the build context: the
    last rule that matches it or one of its parent directories decides."""
    parts = os.path.normpath(path).split("/")
    if parts == ["."]:
        return False
    out = False
    for negate, rx in rules or []:
        if any(rx.match("/".join(parts[:k])) for k in range(1, len(parts) + 1)):
            out = not negate
    return out


# --- Dockerfile parsing -----------------------------------------------------


class Instr:
    def __init__(self, line, cmd, args):
        self.line, self.cmd, self.args = line, cmd, args

    def flags_and_words(self):
        """(flags {name: value}, words) of a COPY/ADD-like instruction."""
        text = self.args.strip()
        flags = {}
        while text.startswith("--"):
            m = re.match(r"--([\w-]+)(?:=(\S*))?\s*", text)
            flags[m.group(1)] = m.group(2) or ""
            text = text[m.end() :]
        if text.startswith("["):
            try:
                words = yaml.safe_load(text)
            except yaml.YAMLError:
                words = shlex.split(text)
        else:
            words = shlex.split(text)
        return flags, words


def parse_dockerfile(path):
    with open(path) as f:
        lines = f.read().split("\n")
    instrs, buf, start = [], "", None
    for n, raw in enumerate(lines, 1):
        stripped = raw.strip()
        if stripped.startswith("#") or (not stripped and start is None):
            continue  # comments go, even inside a continued instruction
        if start is None:
            start = n
        if stripped.endswith("\\"):
            buf += stripped[:-1] + " "
            continue
        buf += stripped
        m = re.match(r"(\w+)\s*(.*)", buf, re.S)
        if m:
            instrs.append(Instr(start, m.group(1).upper(), m.group(2)))
        buf, start = "", None
    if start is not None:
        problem(rel(path), f"line {start}: the file ends inside a continued instruction")
    return instrs


def split_stages(instrs):
    stages, current = [], None
    for ins in instrs:
        if ins.cmd == "FROM":
            words = ins.args.split()
            words = [w for w in words if not w.startswith("--")]
            name = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            current = {"line": ins.line, "image": words[0] if words else "", "name": name, "instrs": []}
            stages.append(current)
        elif current is not None:
            current["instrs"].append(ins)
    return stages


# --- Cargo workspace --------------------------------------------------------


def cargo_targets():
    """(target source paths that must exist to load the workspace, bin names,
    member manifest paths), all relative to ROOT."""
    root = read_toml(os.path.join(ROOT, "Cargo.toml"))
    if root is None:
        return [], set(), []
    members = []
    for pattern in root.get("workspace", {}).get("members", []):
        found = sorted(glob.glob(os.path.join(ROOT, pattern)))
        if not found:
            problem("Cargo.toml", f"workspace member {pattern!r} does not exist")
        members += [rel(m) for m in found]
    packages = (["."] if "package" in root else []) + members
    paths, bins, manifests = [], set(), []
    for pkg in packages:
        manifest = os.path.normpath(os.path.join(pkg, "Cargo.toml"))
        manifests.append(manifest)
        m = root if pkg == "." else read_toml(os.path.join(ROOT, manifest))
        if m is None:
            continue
        lib = m.get("lib")
        if lib is not None:
            paths.append(os.path.normpath(os.path.join(pkg, lib.get("path", "src/lib.rs"))))
        elif os.path.exists(os.path.join(ROOT, pkg, "src/lib.rs")):
            paths.append(os.path.normpath(os.path.join(pkg, "src/lib.rs")))
        for b in m.get("bin", []):
            if "path" in b:
                paths.append(os.path.normpath(os.path.join(pkg, b["path"])))
            if "name" in b:
                bins.add(b["name"])
        if not m.get("bin") and os.path.exists(os.path.join(ROOT, pkg, "src/main.rs")):
            paths.append(os.path.normpath(os.path.join(pkg, "src/main.rs")))
            bins.add(m.get("package", {}).get("name", ""))
    return paths, bins, manifests


# --- checks -----------------------------------------------------------------


def check_dockerignore(context, rules):
    if rules is None:
        problem(rel(os.path.join(context, ".dockerignore")), "is missing: target/ and .git/ would be sent as build context")
        return
    for path in ("target/release/sluice", ".git/HEAD"):
        if not excluded(path, rules):
            problem(rel(os.path.join(context, ".dockerignore")), f"does not exclude {path.split('/')[0]}/")


def check_copy_sources(ins, context, rules, df):
    flags, words = ins.flags_and_words()
    if "from" in flags or len(words) < 2:
        return
    for src in words[:-1]:
        if re.match(r"^[a-z]+://", src):
            continue
        hits = glob.glob(os.path.join(context, src))
        if not hits:
            problem(f"{df}:{ins.line}", f"{ins.cmd} source {src!r} does not exist in the build context")
            continue
        for hit in hits:
            r = os.path.relpath(hit, context)
            if excluded(r, rules):
                problem(f"{df}:{ins.line}", f"{ins.cmd} source {r!r} is excluded by .dockerignore")
            elif os.path.isdir(hit):
                kept = any(
                    not excluded(os.path.relpath(os.path.join(d, f), context), rules)
                    for d, _, files in os.walk(hit)
                    for f in files
                )
                if not kept:
                    problem(f"{df}:{ins.line}", f"{ins.cmd} source {r!r} has no file left after .dockerignore")


def is_manifest_only(src):
    base = os.path.basename(os.path.normpath(src))
    return base in ("Cargo.toml", "Cargo.lock", "rust-toolchain", "rust-toolchain.toml") or src.startswith(".cargo/")


def check_cargo_cache(stage, df, target_paths, manifests):
    """The dependency layer: manifests and stubs first, then sources."""
    instrs = stage["instrs"]
    builds = [i for i, ins in enumerate(instrs) if ins.cmd == "RUN" and re.search(r"\bcargo\s+build\b", ins.args)]
    if not builds:
        return
    first = builds[0]
    copied = set()
    for ins in instrs[:first]:
        if ins.cmd not in ("COPY", "ADD"):
            continue
        flags, words = ins.flags_and_words()
        if "from" in flags:
            continue
        dest = words[-1]
        for src in words[:-1]:
            if not is_manifest_only(src):
                problem(
                    f"{df}:{ins.line}",
                    f"{ins.cmd} {src} comes before the dependency build: any source change would rebuild every dependency",
                )
            # Where it lands, relative to WORKDIR: the same path or into a directory.
            copied.add(os.path.normpath(src))
            if dest.endswith("/") or dest in (".", "./"):
                copied.add(os.path.normpath(os.path.join(dest, os.path.basename(src))))
            else:
                copied.add(os.path.normpath(dest))
    for manifest in manifests + ["Cargo.lock"]:
        if manifest not in copied:
            problem(f"{df}:{instrs[first].line}", f"{manifest} is not copied before the dependency build")
    stub_text = " ".join(ins.args for ins in instrs[: first + 1] if ins.cmd == "RUN")
    for path in target_paths:
        if path not in stub_text:
            problem(
                f"{df}:{instrs[first].line}",
                f"no stub for {path} before the dependency build (a target path a manifest declares or cargo infers)",
            )
    if len(builds) < 2:
        problem(f"{df}:{instrs[first].line}", "only one `cargo build`: the real sources are never built after the dependency layer")
        return
    later_copies = [i for i in range(first + 1, builds[-1]) if instrs[i].cmd in ("COPY", "ADD")]
    if not later_copies:
        problem(f"{df}:{instrs[builds[-1]].line}", "no COPY of the sources between the dependency build and the real build")
        return
    between = " ".join(instrs[i].args for i in range(later_copies[-1] + 1, builds[-1] + 1) if instrs[i].cmd == "RUN")
    if not re.search(r"\btouch\b|\bcargo\s+clean\b", between):
        problem(
            f"{df}:{instrs[builds[-1]].line}",
            "sources copied over the stubs keep their old modification times: touch them (or `cargo clean -p`) "
            "before the real build, or cargo may keep the stub build",
        )


def check_final_stage(stage, df, stages, bins, context):
    instrs = stage["instrs"]
    users = [i for i in instrs if i.cmd == "USER"]
    if not users:
        problem(df, "the final stage has no USER: the container would run as root")
    else:
        user = users[-1].args.strip().split(":")[0]
        if user in ("root", "0", ""):
            problem(f"{df}:{users[-1].line}", f"USER {users[-1].args.strip()} is root")
    if not any(i.cmd in ("ENTRYPOINT", "CMD") for i in instrs):
        problem(df, "the final stage has no ENTRYPOINT or CMD")

    exposed = set()
    for i in instrs:
        if i.cmd == "EXPOSE":
            for w in i.args.split():
                exposed.add(int(w.split("/")[0]))

    installed = " ".join(i.args for i in instrs if i.cmd == "RUN")
    health = [i for i in instrs if i.cmd == "HEALTHCHECK"]
    health_port = None
    if not health:
        problem(df, "the final stage has no HEALTHCHECK")
    else:
        h = health[-1]
        m = re.search(r"\bCMD\b\s*(.*)", h.args, re.S)
        if h.args.strip().upper() == "NONE" or not m:
            problem(f"{df}:{h.line}", "HEALTHCHECK runs no command")
        else:
            cmd = m.group(1).strip()
            words = yaml.safe_load(cmd) if cmd.startswith("[") else shlex.split(cmd)
            tool = os.path.basename(words[0]) if words else ""
            if tool in ("curl", "wget") and not re.search(
                r"(apt-get|apt|apk|microdnf|dnf|yum)\s+(install|add)\b[^;&|]*\b" + tool + r"\b", installed
            ):
                problem(f"{df}:{h.line}", f"HEALTHCHECK uses {tool}, which no RUN of the final stage installs")
            pm = re.search(r"https?://[^/\s:]+:(\d+)(/\S*)?", cmd)
            if pm:
                health_port = int(pm.group(1))
                if "/healthz" not in (pm.group(2) or ""):
                    problem(f"{df}:{h.line}", "HEALTHCHECK does not ask /healthz")
                if health_port not in exposed:
                    problem(f"{df}:{h.line}", f"HEALTHCHECK port {health_port} is not EXPOSEd ({sorted(exposed)})")
            else:
                problem(f"{df}:{h.line}", "HEALTHCHECK names no http://host:port/healthz URL")

    names = {s["name"] for s in stages if s["name"]}
    for i in instrs:
        if i.cmd not in ("COPY", "ADD"):
            continue
        flags, words = i.flags_and_words()
        src_stage = flags.get("from")
        if src_stage is None:
            continue
        if src_stage not in names and not src_stage.isdigit() and not re.search(r"[:/]", src_stage):
            problem(f"{df}:{i.line}", f"COPY --from={src_stage}: no stage has that name")
        for src in words[:-1]:
            m = re.search(r"target/(?:[\w-]+/)?(?:release|debug)/([\w.-]+)$", src)
            if m and bins and m.group(1) not in bins:
                problem(f"{df}:{i.line}", f"copies {m.group(1)}, which no Cargo manifest declares as a binary")

    # The config the image ships: the file ENV SLUICE_CONFIG names.
    config_path = None
    for i in instrs:
        if i.cmd == "ENV":
            m = re.search(r"SLUICE_CONFIG[= ]\s*(\S+)", i.args)
            if m:
                config_path = m.group(1).strip("\"'")
    config = None
    if config_path:
        for i in instrs:
            if i.cmd in ("COPY", "ADD"):
                flags, words = i.flags_and_words()
                if "from" not in flags and len(words) == 2 and words[1] == config_path:
                    config = (words[0], i.line)
        if config is None:
            problem(df, f"ENV SLUICE_CONFIG={config_path}, but no COPY puts a file there")
    metrics_port = None
    if config and not os.path.isfile(os.path.join(context, config[0])):
        config = None  # reported with the COPY sources
    if config:
        cfg = read_toml(os.path.join(context, config[0]))
        addr = ((cfg or {}).get("worker") or {}).get("metrics_addr")
        if addr is None:
            problem(config[0], "worker.metrics_addr is not set: the image's HEALTHCHECK would fail")
        else:
            host, _, port = addr.rpartition(":")
            if host not in ("0.0.0.0", "[::]", "::"):
                problem(config[0], f"worker.metrics_addr = {addr!r}: not reachable from outside the container; use 0.0.0.0:{port}")
            metrics_port = int(port)
            if metrics_port not in exposed:
                problem(config[0], f"worker.metrics_addr port {metrics_port} is not EXPOSEd by {df} ({sorted(exposed)})")
            if health_port is not None and health_port != metrics_port:
                problem(f"{df}", f"HEALTHCHECK asks port {health_port}, the config serves {metrics_port}")
    return exposed, (cfg.get("worker", {}).get("grace_s", 30.0) if config and cfg else 30.0)


def duration_s(text):
    """A compose duration such as 40s, 1m30s or 1500ms, in seconds."""
    if isinstance(text, (int, float)):
        return float(text)
    total, rest = 0.0, str(text).strip()
    for num, unit in re.findall(r"(\d+(?:\.\d+)?)(ms|us|h|m|s)", rest):
        total += float(num) * {"h": 3600, "m": 60, "s": 1, "ms": 0.001, "us": 1e-6}[unit]
    return total


def check_compose():
    path = os.path.join(ROOT, COMPOSE)
    try:
        with open(path) as f:
            doc = yaml.safe_load(f)
    except (OSError, yaml.YAMLError) as e:
        problem(COMPOSE, f"cannot be read as YAML: {e}")
        return
    if not isinstance(doc, dict) or not isinstance(doc.get("services"), dict) or not doc["services"]:
        problem(COMPOSE, "has no `services` mapping")
        return
    services = doc["services"]
    declared_volumes = set((doc.get("volumes") or {}).keys())
    built = 0
    for name, svc in services.items():
        where = f"{COMPOSE}: services.{name}"
        if not isinstance(svc, dict):
            problem(where, "is not a mapping")
            continue
        if "image" not in svc and "build" not in svc:
            problem(where, "has neither `image` nor `build`")
        deps = svc.get("depends_on") or []
        for dep in deps.keys() if isinstance(deps, dict) else deps:
            if dep not in services:
                problem(where, f"depends_on {dep!r}, which is not a service")
        for v in svc.get("volumes") or []:
            source = v.get("source") if isinstance(v, dict) else str(v).split(":")[0]
            if source and ":" in str(v) and not source.startswith((".", "/", "~")) and source not in declared_volumes:
                problem(where, f"uses volume {source!r}, which the top-level `volumes` does not declare")
        env = svc.get("environment") or {}
        if isinstance(env, list):
            env = dict(e.split("=", 1) if "=" in e else (e, "") for e in env)
        build = svc.get("build")
        if build is None:
            continue
        built += 1
        if isinstance(build, str):
            build = {"context": build}
        context = os.path.normpath(os.path.join(ROOT, build.get("context", ".")))
        if not os.path.isdir(context):
            problem(where, f"build.context {build.get('context')!r} is not a directory")
            continue
        df_path = os.path.join(context, build.get("dockerfile", "Dockerfile"))
        df = rel(df_path)
        if not os.path.isfile(df_path):
            problem(where, f"build.dockerfile {df!r} does not exist")
            continue
        exposed, grace_s = check_dockerfile(df_path, context)
        if "SLUICE_WORKER__METRICS_ADDR" in env:
            port = int(str(env["SLUICE_WORKER__METRICS_ADDR"]).rpartition(":")[2])
            if port not in exposed:
                problem(where, f"SLUICE_WORKER__METRICS_ADDR port {port} is not EXPOSEd by {df} ({sorted(exposed)})")
        if "SLUICE_WORKER__GRACE_S" in env:
            grace_s = float(env["SLUICE_WORKER__GRACE_S"])
        published = set()
        replicas = ((svc.get("deploy") or {}).get("replicas")) or 1
        for p in svc.get("ports") or []:
            if isinstance(p, dict):
                target, host = p.get("target"), p.get("published")
            else:
                parts = str(p).split("/")[0].rsplit(":", 2)
                target = parts[-1]
                host = parts[-2] if len(parts) >= 2 else None
            try:
                target = int(target)
            except (TypeError, ValueError):
                problem(where, f"port {p!r} names no container port")
                continue
            published.add(target)
            if target not in exposed:
                problem(where, f"publishes container port {target}, which {df} does not EXPOSE ({sorted(exposed)})")
            if host and replicas > 1:
                problem(where, f"publishes fixed host port {host} with {replicas} replicas: only one can bind it")
        for e in svc.get("expose") or []:
            published.add(int(str(e).split("/")[0]))
        for port in sorted(exposed - published):
            problem(where, f"{df} EXPOSEs {port}, which the service neither publishes (`ports`) nor lists in `expose`")
        if "stop_grace_period" not in svc:
            problem(where, f"no stop_grace_period: Docker's default 10 s is shorter than the workers' grace_s ({grace_s} s)")
        elif duration_s(svc["stop_grace_period"]) <= grace_s:
            problem(where, f"stop_grace_period {svc['stop_grace_period']} is not longer than grace_s ({grace_s} s)")
    if built == 0:
        problem(COMPOSE, "no service is built from this repository")


def check_dockerfile(df_path, context):
    df = rel(df_path)
    rules = load_dockerignore(context)
    check_dockerignore(context, rules)
    instrs = parse_dockerfile(df_path)
    stages = split_stages(instrs)
    if not stages:
        problem(df, "has no FROM")
        return set(), 30.0
    if any(ins.cmd not in ("ARG", "FROM") for ins in instrs[: instrs.index(next(i for i in instrs if i.cmd == "FROM"))]):
        problem(df, "an instruction other than ARG comes before the first FROM")
    if len(stages) < 2:
        problem(df, "is not multi-stage: the Rust toolchain would ship in the image")
    for ins in instrs:
        if ins.cmd in ("COPY", "ADD"):
            check_copy_sources(ins, context, rules, df)
    target_paths, bins, manifests = cargo_targets()
    for s in stages[:-1]:
        check_cargo_cache(s, df, target_paths, manifests)
    return check_final_stage(stages[-1], df, stages, bins, context)


def main():
    if not os.path.exists(os.path.join(ROOT, COMPOSE)):
        problem(COMPOSE, "does not exist")
    else:
        check_compose()
    if problems:
        for p in problems:
            print(f"lint-deploy: {p}", file=sys.stderr)
        print(f"lint-deploy: {len(problems)} problem(s)", file=sys.stderr)
        return 1
    print("lint-deploy: structure of docker-compose.yml, its Dockerfile, .dockerignore and the shipped config: ok")
    return 0


if __name__ == "__main__":
    sys.exit(main())
