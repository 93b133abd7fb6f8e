"""Benchmark: `tamer df` and `tamer plan` against `docker system df -v` on the same crowded engine.

Fills a private sandbox engine with 1,000 containers (running, exited,
created), 100 images, anonymous and named volumes holding 300,000 small files
in all, and a few large logs; then times, alternating with the anchor in the
same run (medians), and prints each ratio and whether its target (issue 11) holds:

- `tamer df`, ledger warm (the state dir kept between runs): <= 0.5;
- `tamer df`, cold (the ledger deleted before each run): <= 1.5;
- `tamer plan` (default policy), ledger warm: <= 1.0.

tamer reports more than the anchor (logs, owners, unaccounted space, what could go and why).
For a target missed, the floor line says what the bare minimum costs against the same anchor:
the interpreter's start, the engine's answers tamer needs (fetched by curl) and `du -sx` of
what every run must walk (volumes, writable layers, the rest of the data-root less image layers
and containers' init layers, which the ledger remembers).

    .venv/bin/python bench/tamer_df.py [--scale 0.1] [--repeat 3]
Needs root (it starts its own dockerd); never touches the default engine.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tamer.sandbox import PrivateEngine, build_busybox_image, why_no_private_engine


def fill(sandbox: PrivateEngine, scale: float) -> dict[str, int]:
    engine = sandbox.engine
    api = engine.api
    n_images = max(2, int(100 * scale))
    n_containers = max(10, int(1000 * scale))
    n_files = int(300_000 * scale)
    images = [f"bench/img{i}:1" for i in range(n_images)]
    for i, ref in enumerate(images):
        build_busybox_image(engine, ref, extra_files={"/etc/id": str(i).encode() * 1000})

    n_running = n_containers // 10
    n_created = n_containers * 3 // 10
    n_exited = n_containers - n_running - n_created

    def create(i: int) -> str:
        image = images[i % n_images]
        kind = "running" if i < n_running else "created" if i < n_running + n_created else "exited"
        binds = [f"named{i % 50}:/data"] if i % 4 == 0 else None
        volumes = ["/anon"] if i % 4 == 1 else None
        cmd = (
            ["sleep", "3600"]
            if kind == "running"
            else ["sh", "-c", f"echo {i} > /out; head -c {i % 7 * 1000} /bin/busybox > /w"]
        )
        c = api.create_container(image, cmd, volumes=volumes, host_config=api.create_host_config(binds=binds))
        cid = str(c["Id"])
        if kind != "created":
            api.start(cid)
        if kind == "exited":
            api.wait(cid, timeout=120)
        return cid

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(n_containers)))

    # a few large logs
    for i in range(3):
        c = api.create_container(images[0], ["sh", "-c", f"yes 'log line {i}' | head -c {20_000_000}"])
        api.start(c["Id"])
        api.wait(c["Id"], timeout=300)

    # 300,000 small files spread over the volumes, written straight into their folders
    vols = [v["Mountpoint"] for v in engine.volumes()]
    per_volume = max(1, n_files // max(1, len(vols)))
    written = 0
    for mp in vols:
        for d in range(0, per_volume, 1000):
            folder = os.path.join(mp, f"d{d // 1000}")
            os.makedirs(folder, exist_ok=True)
            for f in range(min(1000, per_volume - d)):
                with open(os.path.join(folder, f"f{f}"), "wb") as fh:
                    fh.write(b"x" * (f % 200 + 1))
                written += 1
    return {
        "images": n_images,
        "containers": n_containers + 3,
        "running": n_running,
        "exited": n_exited + 3,
        "created": n_created,
        "volumes": len(vols),
        "files": written,
    }


def timed(cmd: list[str], env: dict[str, str], cpu: list[float] | None = None) -> float:
    """Wall seconds of one run; `cpu`, when given, gets its CPU seconds (the process and its children)."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env)
    took = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    if cpu is not None:
        cpu.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return took


def compare(
    label: str,
    ours: list[str],
    anchor: list[str],
    env: dict[str, str],
    repeat: int,
    target: float,
    cold: str = "",
) -> tuple[float, float]:
    """Alternating runs after one warm-up each; `cold`: a state dir emptied before each of ours."""

    cpu: list[float] = []

    def one() -> float:
        if cold:
            shutil.rmtree(cold, ignore_errors=True)
        return timed(ours, env, cpu)

    one()
    timed(anchor, env)
    cpu.clear()
    o: list[float] = []
    a: list[float] = []
    for _ in range(repeat):
        o.append(one())
        a.append(timed(anchor, env))
    mo, ma = statistics.median(o), statistics.median(a)
    ratio = mo / ma
    # each run against the anchor run beside it: on a shared machine a burst of other work lands on
    # both, where the medians of the two series can each catch a different burst
    paired = statistics.median(x / y for x, y in zip(o, a, strict=True))
    print(
        f"{label:26s} median {mo:6.2f}s  runs {[round(x, 2) for x in o]}  CPU {statistics.median(cpu):.2f}s\n"
        f"{'docker system df -v':26s} median {ma:6.2f}s  runs {[round(x, 2) for x in a]}\n"
        f"   ratio {ratio:5.2f}  (target <= {target})  {'HOLDS' if ratio <= target else 'missed'}; "
        f"median of the paired runs' ratios {paired:.2f}; load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    return mo, ma


def floor(sandbox: PrivateEngine, env: dict[str, str], repeat: int) -> tuple[float, float]:
    """The bare minimum of a warm df: interpreter start + the engine answers + du of what is walked every run."""
    sock = sandbox.host.removeprefix("unix://")
    paths = ["/info", "/containers/json?all=1", "/images/json", "/volumes"]
    if sandbox.engine.supports("1.42"):
        paths.append("/system/df?type=build-cache")  # older engines would compute everything (tamer skips it)
    curl = ["curl", "-s", "-o", "/dev/null", "--unix-socket", sock, *(f"http://x{p}" for p in paths)]
    root = str(sandbox.data_root)
    layer_dirs = set()
    for cache_id_file in Path(root, "image", "overlay2", "layerdb", "sha256").glob("*/cache-id"):
        layer_dirs.add(cache_id_file.read_text().strip())
    # everything but the image layers' and the containers' init layers' folders, which a warm run takes
    # from the ledger
    walked = [os.path.join(root, name) for name in os.listdir(root) if name != "overlay2"]
    walked += [
        str(p)
        for p in Path(root, "overlay2").iterdir()
        if p.name not in layer_dirs and not p.name.endswith("-init")
    ]
    du = ["du", "-sxc", *walked]
    bare = [sys.executable, "-c", "pass"]
    parts = {
        name: statistics.median(timed(cmd, env) for _ in range(repeat))
        for name, cmd in (("python", bare), ("engine", curl), ("du", du))
    }
    total = sum(parts.values())
    cores = os.cpu_count() or 1
    split = parts["python"] + parts["engine"] + parts["du"] / cores
    print(
        f"   floor: python start {parts['python']:.2f}s + engine answers (curl) {parts['engine']:.2f}s + "
        f"du -sx of what every run walks {parts['du']:.2f}s = {total:.2f}s\n"
        f"   (the same walk split perfectly over {cores} cores, as tamer's workers split it: {split:.2f}s; "
        f"the walk is stat calls, the kernel's time, and du makes no more of them than tamer does)"
    )
    return total, split


def settle(quiet: float = 1.5, limit: float = 120.0) -> None:
    """Before measuring: the fill's writes flushed (some GB of dirty pages, written back by the kernel's
    threads while both commands ran) and the 1-minute load average under `quiet`, or `limit` seconds gone.
    Both contenders then start from the same settled host; the load is printed either way."""
    t0 = time.monotonic()
    os.sync()
    while os.getloadavg()[0] > quiet and time.monotonic() - t0 < limit:
        time.sleep(5)
    load = os.getloadavg()
    print(
        f"settled for {time.monotonic() - t0:.0f}s after the fill (sync, then load under {quiet} or {limit:.0f}s): "
        f"load {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full-size host to build")
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()
    reason = why_no_private_engine()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    load = os.getloadavg()
    print(f"load average before the run: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} on {os.cpu_count()} CPUs")
    with PrivateEngine.create() as sandbox:
        t0 = time.monotonic()
        counts = fill(sandbox, args.scale)
        print(f"filled the sandbox in {time.monotonic() - t0:.0f}s: {counts}")
        settle()
        warm_state = tempfile.mkdtemp(prefix="tamer-bench-warm-")
        cold_state = tempfile.mkdtemp(prefix="tamer-bench-cold-")
        warm = {**os.environ, "DOCKER_HOST": sandbox.host, "TAMER_STATE_DIR": warm_state}
        cold = {**warm, "TAMER_STATE_DIR": cold_state}
        # the command as installed (packages/tamer/bin/tamer, beside this Python), as the anchor is the
        # docker CLI as installed; `python -m tamer` adds runpy's start, some 11 ms a run
        launcher = Path(sys.executable).with_name("tamer")
        tamer = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "tamer"]
        print(f"tamer runs as: {' '.join(tamer)}")
        df_cmd = [*tamer, "df", "--json", "--quiet"]
        plan_cmd = [*tamer, "plan", "--json", "--quiet"]
        anchor = ["docker", "system", "df", "-v"]
        _, theirs = compare("tamer df (ledger warm)", df_cmd, anchor, warm, args.repeat, 0.5)
        compare("tamer df (cold: no ledger)", df_cmd, anchor, cold, args.repeat, 1.5, cold=cold_state)
        compare("tamer plan (ledger warm)", plan_cmd, anchor, warm, args.repeat, 1.0)
        bottom, split = floor(sandbox, warm, args.repeat)
        print(
            f"   floor ratio to docker system df -v: {bottom / theirs:.2f} with du's serial walk, "
            f"{split / theirs:.2f} with it split over the cores"
        )


if __name__ == "__main__":
    main()
