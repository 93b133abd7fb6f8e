"""Benchmark (issue 11, "tamer fast"): how `tamer df`, `tamer ls` and `tamer plan` grow with the host.

One private engine is filled step by step (containers are added between points, never refilled)
to each size in --sizes; at each point every command is timed against its anchor in the same run
(alternating, medians): `tamer df` and `tamer plan` (ledger warm) against `docker system df -v`,
`tamer ls containers|images|volumes` against `docker ps -a` / `docker images` / `docker volume ls`.
Each line prints the ratio and whether the issue's target holds (df <= 0.5, plan <= 1.0, ls <= 1.5),
and the peak RSS of the tamer process in one more run (the largest of it and its walker workers,
from wait4 in a small shim: see RSS_SHIM). At the end: the curve, the growth exponent of each command
(the slope of log time against log containers, fitted over the points; 1.0 is linear), whether memory
stayed under 150 MB at the largest size, and how it grew per 1,000 containers.

The host at N containers: 5 images (one declares VOLUME /data), N containers of which a quarter
mount a named volume (N/4 named volumes, each holding a few files), a quarter make an anonymous one,
1 in 20 has run and exited, a handful run, the rest are created. Containers are created concurrently
through the API (16 at a time).

    .venv/bin/python bench/tamer_scale.py [--sizes 1000,2000] [--repeat 3]
    .venv/bin/python bench/tamer_scale.py --sizes 1000,2000,10000   # the full curve

How long: on the 2-core bench host the fill adds about 40-60 containers a second, so the default
(1,000 and 2,000) takes about 3 minutes in all, and the full curve to 10,000 about 15-20 minutes
(the fill dominates; each point's timings take under a minute at 2,000 and 2-4 minutes at 10,000).
Needs root (it starts its own dockerd); never touches the default engine.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from urllib.parse import urlencode

from tamer.sandbox import PrivateEngine, build_busybox_image, why_no_private_engine

PY = sys.executable
TAMER = str(Path(PY).with_name("tamer")) if Path(PY).with_name("tamer").exists() else None
MEMORY_LIMIT_MB = 150.0
TARGETS = {"df": 0.5, "plan": 1.0, "ls containers": 1.5, "ls images": 1.5, "ls volumes": 1.5}
ANCHORS = {
    "df": ["docker", "system", "df", "-v"],
    "plan": ["docker", "system", "df", "-v"],
    "ls containers": ["docker", "ps", "-a"],
    "ls images": ["docker", "images"],
    "ls volumes": ["docker", "volume", "ls"],
}


def tamer_cmd(*args: str) -> list[str]:
    return [TAMER, *args] if TAMER else [PY, "-m", "tamer", *args]


def run_child(cmd: list[str], env: dict[str, str]) -> float:
    """Seconds of one run (it must exit 0, or 2 for ls)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return took


# Forks and execs the command given, waits for it and prints its peak RSS in KiB (ru_maxrss from wait4).
# Why not wait4 on the command from here: a child spawned by this process (vfork and exec, as subprocess
# does) starts with this process's memory, and Linux keeps that memory's high-water mark in the child's
# ru_maxrss when it execs, so a small command reads as big as this bench (57.7 MB for every command at
# 1,000 containers, `true` included). The shim is a bare interpreter (-S -I: some 9 MB, below any tamer).
RSS_SHIM = (
    "import os, sys\n"
    "pid = os.fork()\n"
    "if pid == 0:\n"
    "    os.execvp(sys.argv[1], sys.argv[1:])\n"
    "_, status, usage = os.wait4(pid, 0)\n"
    "print(usage.ru_maxrss, file=sys.stderr)\n"
    "sys.exit(os.waitstatus_to_exitcode(status))\n"
)


def peak_rss(cmd: list[str], env: dict[str, str]) -> float:
    """Peak RSS in MB of one run of `cmd`: the largest of it and its own children (tamer's walker workers)."""
    proc = subprocess.run(
        [PY, "-S", "-I", "-c", RSS_SHIM, *cmd], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env
    )
    lines = proc.stderr.decode(errors="replace").strip().splitlines()
    if proc.returncode not in (0, 2) or not lines or not lines[-1].isdigit():
        raise SystemExit(f"{' '.join(cmd)} failed ({proc.returncode}): {' '.join(lines)[-2000:]}")
    return int(lines[-1]) / 1024


def add_containers(sandbox: PrivateEngine, images: list[str], start: int, stop: int) -> None:
    api = sandbox.engine.api

    def create(i: int) -> None:
        binds = [f"scale-named{i // 4}:/data"] if i % 4 == 0 else None
        image = images[1] if i % 4 == 1 else images[i % len(images)]  # images[1] declares VOLUME /data
        running = i % 1000 == 7
        cmd = ["sleep", "86400"] if running else ["sh", "-c", f"echo {i} > /out"]
        c = api.create_container(
            image,
            cmd,
            labels={"bench": str(i), **({"com.docker.compose.project": f"p{i % 13}"} if i % 3 == 0 else {})},
            host_config=api.create_host_config(binds=binds),
        )
        if running or i % 20 == 3:
            api.start(c["Id"])
            if not running:
                api.wait(c["Id"], timeout=300)

    with ThreadPoolExecutor(max_workers=16) as pool:
        list(pool.map(create, range(start, stop)))
    # a few small files in each new named volume: volumes are walked on every run
    for v in sandbox.engine.volumes():
        if v["Name"].startswith("scale-named"):
            mp = v["Mountpoint"]
            if not os.path.exists(os.path.join(mp, "f0")):
                for f in range(5):
                    with open(os.path.join(mp, f"f{f}"), "wb") as fh:
                        fh.write(b"v" * (f * 1000 + 1))


def measure(label: str, env: dict[str, str], repeat: int) -> tuple[float, float, float]:
    """(ours, anchor, peak RSS MB): medians of alternating runs after one warm-up each; the RSS of one
    more run of ours, through the shim (not timed: the shim's start would count)."""
    args = {"df": ["df", "--json", "--quiet"], "plan": ["plan", "--json", "--quiet"]}.get(
        label, label.split()
    )
    ours_cmd, anchor = tamer_cmd(*args), ANCHORS[label]
    run_child(ours_cmd, env)
    run_child(anchor, env)
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeat):
        ours.append(run_child(ours_cmd, env))
        theirs.append(run_child(anchor, env))
    return statistics.median(ours), statistics.median(theirs), peak_rss(ours_cmd, env)


# what each lean listing asks the engine (as bench/tamer_fast.py's floors): containers their list (and
# records, read from disk meanwhile); images their list; volumes their list, the engine's dangling list
# and the containers that mount a volume on it (--users adds the container list; not timed here)
FLOOR_READS = {
    "ls containers": "/_ping + /containers/json",
    "ls images": "/_ping + /images/json",
    "ls volumes": "/_ping + /volumes + its dangling list + the containers that mount those",
}


def floor_answers(sandbox: PrivateEngine, env: dict[str, str], repeat: int) -> dict[str, float]:
    """Seconds of the bare minimum per listing: an interpreter start (tamer's lean listings import no
    argparse: tamer.cli.lean) plus the engine's answers, by curl."""
    sock = sandbox.host.removeprefix("unix://")

    def curl(*paths: str) -> float:
        cmd = ["curl", "-s", "--unix-socket", sock]
        for p in paths:
            cmd += ["-o", "/dev/null", f"http://x{p}"]
        return statistics.median(run_child(cmd, env) for _ in range(repeat))

    py = statistics.median(run_child([PY, "-c", "pass"], env) for _ in range(repeat))
    names = [v["Name"] for v in sandbox.engine.volumes(dangling=True)]
    mounting = "/containers/json?" + urlencode({"all": 1, "filters": json.dumps({"volume": names})})
    dangling = "/volumes?" + urlencode({"filters": json.dumps({"dangling": ["true"]})})
    return {
        "ls containers": py + curl("/_ping", "/containers/json?all=1"),
        "ls images": py + curl("/_ping", "/images/json"),
        "ls volumes": py + curl("/_ping", "/volumes", dangling, *([mounting] if names else [])),
    }


def slope(points: list[tuple[int, float]]) -> float:
    """Least-squares slope of log(seconds) on log(containers)."""
    xs = [math.log(n) for n, _ in points]
    ys = [math.log(t) for _, t in points]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / den if den else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,2000", help="comma-separated container counts, ascending")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    try:
        sizes = [int(s) for s in args.sizes.split(",")]
    except ValueError:
        raise SystemExit(f"--sizes takes whole numbers separated by commas, got {args.sizes!r}") from None
    if not sizes or sizes != sorted(sizes) or sizes[0] < 1:
        raise SystemExit(f"--sizes must be ascending and >= 1, got {args.sizes!r}")
    reason = why_no_private_engine()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    curve: dict[str, list[tuple[int, float]]] = {label: [] for label in TARGETS}
    anchor_curve: dict[str, list[tuple[int, float]]] = {label: [] for label in TARGETS}
    peak_at: dict[int, float] = {}
    with PrivateEngine.create() as sandbox:
        engine = sandbox.engine
        images = [f"scale/img{i}:1" for i in range(5)]
        for i, ref in enumerate(images):
            build_busybox_image(
                engine,
                ref,
                volumes=("/data",) if i == 1 else (),
                extra_files={"/etc/i": str(i).encode() * 500},
            )
        env = {
            **os.environ,
            "DOCKER_HOST": sandbox.host,
            "TAMER_STATE_DIR": tempfile.mkdtemp(prefix="tamer-scale-state-"),
        }
        have = 0
        for n in sizes:
            t0 = time.monotonic()
            add_containers(sandbox, images, have, n)
            filled = time.monotonic() - t0
            have = n
            print(
                f"== {n} containers, {len(engine.volumes())} volumes, {len(engine.images())} images "
                f"(added {n - (sizes[sizes.index(n) - 1] if sizes.index(n) else 0)} in {filled:.0f}s)",
                flush=True,
            )
            peak_at[n] = 0.0
            floors = floor_answers(sandbox, env, args.repeat)
            for label, target in TARGETS.items():
                ours, theirs, rss = measure(label, env, args.repeat)
                curve[label].append((n, ours))
                anchor_curve[label].append((n, theirs))
                peak_at[n] = max(peak_at[n], rss)
                ratio = ours / theirs
                print(
                    f"   tamer {label:14s} {ours * 1000:8.0f} ms vs {' '.join(ANCHORS[label]):20s} "
                    f"{theirs * 1000:8.0f} ms  ratio {ratio:5.2f} (target <= {target}) "
                    f"{'HOLDS' if ratio <= target else 'missed'}  peak RSS {rss:6.1f} MB",
                    flush=True,
                )
                if label.startswith("ls") and ratio > target:
                    print(
                        f"      floor: python + the engine answers it needs (curl: {FLOOR_READS[label]}) "
                        f"= {floors[label] * 1000:.0f} ms, ratio {floors[label] / theirs:.2f} to the anchor",
                        flush=True,
                    )
    print("== the curve (seconds) and growth exponent (1.0 = linear); the anchor's own exponent beside it")
    print("   " + " ".join(f"{n:>10d}" for n in sizes) + "   exponent")
    for label, points in curve.items():
        exp = slope(points) if len(points) > 1 else float("nan")
        theirs_exp = slope(anchor_curve[label]) if len(points) > 1 else float("nan")
        print(
            f"   {label:14s}" + " ".join(f"{t:10.3f}" for _, t in points) + f"   {exp:6.2f}"
            f"  {'linear or better' if exp <= 1.1 else 'MORE THAN LINEAR'}"
            f"  ({' '.join(ANCHORS[label])}: {theirs_exp:.2f})"
        )
    top = sizes[-1]
    print(
        f"== memory: peak RSS {peak_at[top]:.1f} MB at {top} containers (limit {MEMORY_LIMIT_MB:.0f} MB "
        f"at 10,000): {'HOLDS' if peak_at[top] < MEMORY_LIMIT_MB else 'missed'}"
        + ("" if top >= 10_000 else " (run with --sizes ...,10000 for the target's own point)")
    )
    if len(sizes) > 1:
        # the peak of each size, and its growth per 1,000 containers between the smallest and the largest
        per_1000 = (peak_at[top] - peak_at[sizes[0]]) / (top - sizes[0]) * 1000
        print(
            "   peak RSS by size: "
            + ", ".join(f"{n}: {peak_at[n]:.1f} MB" for n in sizes)
            + f"; {per_1000:.1f} MB more per 1,000 containers"
        )


if __name__ == "__main__":
    main()
