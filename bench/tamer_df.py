"""Benchmark: `tamer df` against `docker system df -v` on the same crowded engine.

Fills a private sandbox engine with 1,000 containers (running, exited,
created), 100 images, anonymous and named volumes holding 300,000 small files
in all, and a few large logs; then times both commands, alternating, in the
same run and prints the ratio. Target: ratio <= 0.5 while reporting more
(logs, owners, unaccounted).

    .venv/bin/python bench/tamer_df.py [--scale 0.1] [--repeat 3]
Needs root (it starts its own dockerd); never touches the default engine.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

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


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, env=env)
    took = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed: {proc.stderr.decode(errors='replace')[-2000:]}")
    return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scale", type=float, default=1.0, help="fraction of the full-size host to build")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    reason = why_no_private_engine()
    if reason:
        raise SystemExit(f"cannot run: {reason}")
    with PrivateEngine.create() as sandbox:
        t0 = time.monotonic()
        counts = fill(sandbox, args.scale)
        print(f"filled the sandbox in {time.monotonic() - t0:.0f}s: {counts}")
        env = {**os.environ, "DOCKER_HOST": sandbox.host}
        ours_cmd = [sys.executable, "-m", "tamer", "df", "--json", "--quiet"]
        theirs_cmd = ["docker", "system", "df", "-v"]
        # warm both (page cache, engine caches) once, then alternate
        timed(ours_cmd, env)
        timed(theirs_cmd, env)
        ours, theirs = [], []
        for _ in range(args.repeat):
            ours.append(timed(ours_cmd, env))
            theirs.append(timed(theirs_cmd, env))
        o, t = statistics.median(ours), statistics.median(theirs)
        print(f"tamer df --json         median {o:.2f}s  runs {[round(x, 2) for x in ours]}")
        print(f"docker system df -v     median {t:.2f}s  runs {[round(x, 2) for x in theirs]}")
        print(
            f"ratio tamer/docker = {o / t:.2f}  (target <= 0.5; tamer also reports logs, owners, unaccounted)"
        )


if __name__ == "__main__":
    main()
