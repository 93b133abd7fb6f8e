"""Benchmark (issue 11, "tamer fast"): start-up, `tamer ls` and `tamer clean --apply` against their anchors.

Each target is printed as a ratio to its anchor measured in the same run (alternating runs,
medians), with whether it holds:

- start-up: `tamer --help`, `tamer --version` and a usage error (`tamer pods`) <= 4x the
  interpreter's own start-up (`python -c pass`, the same interpreter);
- `tamer ls containers|images|volumes` <= 1.5x `docker ps -a` / `docker images` / `docker volume ls`
  on a private engine holding --containers containers (default 2,000) and about half as many volumes;
- with --clean: `tamer clean --apply --yes` of --containers stopped containers <= 1.0x
  `docker container prune -f` of as many (two fills of the same shape).

For each ls view a floor line says what the bare minimum costs against the same anchor: the
interpreter's own start (tamer's lean listings import no argparse) plus the engine's answers that view
needs, fetched by curl. For volumes a second floor counts only the chain tamer waits on (the dangling
list, then the containers mounting what it names), the volume list being read beside it, and a line
gives each of that view's answers on its own. `tamer ls images|volumes --users` (which also read the
container list) are timed for information.

    .venv/bin/python bench/tamer_fast.py [--containers 2000] [--repeat 7] [--clean]
Needs root (it starts its own dockerd); never touches the default engine.
"""

from __future__ import annotations

import argparse
import json
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
CONTAINERS_ONLY_POLICY = """\
version = 1
[containers]
states = ["exited", "created", "dead"]
older_than = "0s"
"""


def tamer_cmd(*args: str) -> list[str]:
    return [TAMER, *args] if TAMER else [PY, "-m", "tamer", *args]


def fill(sandbox: PrivateEngine, n_containers: int, images: list[str], *, named_volumes: int) -> None:
    """n_containers stopped containers (created or exited); a quarter use a named volume, a quarter make an anonymous one."""
    api = sandbox.engine.api
    for i in range(named_volumes):
        api.create_volume(f"bench-named{i}")

    def create(i: int) -> None:
        binds = [f"bench-named{i % max(1, named_volumes)}:/data"] if i % 4 == 0 and named_volumes else None
        image = images[1] if i % 4 == 1 else images[i % len(images)]  # images[1] declares VOLUME /data
        c = api.create_container(
            image, ["true"], labels={"bench": str(i)}, host_config=api.create_host_config(binds=binds)
        )
        if i % 3 == 0:
            api.start(c["Id"])
            api.wait(c["Id"], timeout=120)

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(create, range(n_containers)))


def timed(cmd: list[str], env: dict[str, str]) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    took = time.perf_counter() - start
    if proc.returncode not in (0, 2):
        raise SystemExit(
            f"{' '.join(cmd)} failed ({proc.returncode}): {proc.stderr.decode(errors='replace')[-2000:]}"
        )
    return took


def compare(
    label: str, ours: list[str], anchor: list[str], env: dict[str, str], repeat: int, target: float
) -> tuple[float, float]:
    timed(ours, env)
    timed(anchor, env)
    o: list[float] = []
    a: list[float] = []
    for _ in range(repeat):
        o.append(timed(ours, env))
        a.append(timed(anchor, env))
    mo, ma = statistics.median(o), statistics.median(a)
    ratio = mo / ma
    verdict = "held" if ratio <= target else "MISSED"
    print(
        f"{label:34s} {mo * 1000:8.1f} ms vs {' '.join(anchor[:3]):28s} {ma * 1000:8.1f} ms  "
        f"ratio {ratio:5.2f}  (target <= {target})  {verdict}",
        flush=True,
    )
    return mo, ma


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--containers", type=int, default=2000)
    parser.add_argument("--repeat", type=int, default=7)
    parser.add_argument(
        "--clean", action="store_true", help="also time clean --apply against container prune"
    )
    args = parser.parse_args()

    env = {**os.environ}
    print("== start-up (no engine needed)")
    bare = [PY, "-c", "pass"]
    for argv in (["--help"], ["--version"], ["pods"]):
        compare(f"tamer {' '.join(argv)}", tamer_cmd(*argv), bare, env, args.repeat * 3, 4.0)

    reason = why_no_private_engine()
    if reason:
        print(f"ls and clean targets skipped: {reason}")
        return
    with PrivateEngine.create() as sandbox:
        engine = sandbox.engine
        images = ["bench/a:1", "bench/b:1", "bench/c:1"]
        build_busybox_image(engine, images[0])
        build_busybox_image(engine, images[1], volumes=("/data",))
        build_busybox_image(engine, images[2], extra_files={"/etc/c": b"c" * 1000})
        t0 = time.monotonic()
        fill(sandbox, args.containers, images, named_volumes=args.containers // 4)
        n_vols = len(engine.volumes())
        print(
            f"== ls: {args.containers} containers, {n_vols} volumes, {len(engine.images())} images "
            f"(filled in {time.monotonic() - t0:.0f}s)"
        )
        env = {**os.environ, "DOCKER_HOST": sandbox.host}
        state = tempfile.mkdtemp(prefix="tamer-bench-state-")
        env["TAMER_STATE_DIR"] = state
        anchors: dict[str, float] = {}
        anchors_cmd: dict[str, list[str]] = {}
        for kind, anchor in (
            ("containers", ["docker", "ps", "-a"]),
            ("images", ["docker", "images"]),
            ("volumes", ["docker", "volume", "ls"]),
        ):
            anchors_cmd[kind] = anchor
            anchors[kind] = compare(f"tamer ls {kind}", tamer_cmd("ls", kind), anchor, env, args.repeat, 1.5)[
                1
            ]
        # the floors: an interpreter start (the lean listings import no argparse: tamer.cli.lean) and the
        # engine's own answers each view needs, fetched by curl; python + argparse is shown for reference.
        # `tamer ls images|volumes` read only their own list (volumes also the engine's dangling list);
        # --users adds the container list, whose cost is shown beside them.
        sock = sandbox.host.removeprefix("unix://")
        answer: dict[str, float] = {}
        dangling = "/volumes?filters=%7B%22dangling%22%3A%5B%22true%22%5D%7D"
        # and the containers that mount a volume on the engine's dangling list (engine 20.10 takes no
        # reference for --volumes-from until a container starts, so that list alone can call a used
        # volume orphaned): one filtered container list, as tamer asks it
        names = [v["Name"] for v in engine.volumes(dangling=True)]
        mounting = "/containers/json?" + urlencode({"all": 1, "filters": json.dumps({"volume": names})})
        # tamer reads the volume list beside the chain that decides its time (the dangling list, then the
        # containers mounting what it names): the chain alone, read in sequence, is that view's floor when
        # the lists are read side by side
        chain = ["/_ping", dangling, *([mounting] if names else [])]
        for kind, paths in (
            ("containers", ["/_ping", "/containers/json?all=1"]),
            ("images", ["/_ping", "/images/json"]),
            ("volumes", ["/_ping", "/volumes", dangling, *([mounting] if names else [])]),
            ("volumes chain", chain),
            ("container list", ["/containers/json?all=1"]),
        ):
            curl = ["curl", "-s", "--unix-socket", sock, *(f"http://x{p}" for p in paths)]
            curl[2:2] = ["-o", "/dev/null"] * len(paths)
            answer[kind] = statistics.median(timed(curl, env) for _ in range(args.repeat))
        # each of the volumes view's answers on its own, as the engine gives it (curl's time per transfer on
        # one kept-alive connection: no process start in it)
        each: dict[str, list[float]] = {}
        labels = ["ping", "volume list", "dangling list", *(["containers mounting those"] if names else [])]
        for _ in range(args.repeat):
            curl = ["curl", "-s", "-w", "%{time_total}\\n", "--unix-socket", sock]
            for p in ["/_ping", "/volumes", dangling, *([mounting] if names else [])]:
                curl += ["-o", "/dev/null", f"http://x{p}"]
            out = subprocess.run(curl, capture_output=True, text=True, env=env, check=True).stdout.split()
            for label, took in zip(labels, out, strict=True):
                each.setdefault(label, []).append(float(took))
        py = statistics.median(timed(bare, env) for _ in range(args.repeat))
        cli = [PY, "-c", "import argparse; argparse.ArgumentParser().parse_args([])"]
        parser_floor = statistics.median(timed(cli, env) for _ in range(args.repeat))
        for kind, anchor in anchors.items():
            floor = py + answer[kind]
            print(
                f"   floor for ls {kind:10s}: python {py * 1000:5.1f} ms (with argparse {parser_floor * 1000:5.1f}) "
                f"+ engine answers (curl) {answer[kind] * 1000:6.1f} ms = {floor * 1000:6.1f} ms, "
                f"ratio {floor / anchor:5.2f} to its anchor"
            )
        floor = py + answer["volumes chain"]
        print(
            f"   floor for ls volumes, the lists read side by side: python {py * 1000:5.1f} ms + the chain "
            f"(ping, dangling list, containers mounting those; curl) {answer['volumes chain'] * 1000:6.1f} ms "
            f"= {floor * 1000:6.1f} ms, ratio {floor / anchors['volumes']:5.2f} to its anchor"
        )
        print(
            "   the volumes view's answers, each on its own (median ms): "
            + ", ".join(f"{label} {statistics.median(t) * 1000:.1f}" for label, t in each.items())
        )
        for kind in ("images", "volumes"):
            compare(  # information, not a target: --users asks for more than the anchor shows
                f"tamer ls {kind} --users (info)",
                tamer_cmd("ls", kind, "--users"),
                anchors_cmd[kind],
                env,
                args.repeat,
                1.5,
            )
            print(
                f"   (information: --users reads the container list too, {answer['container list'] * 1000:.1f} ms "
                f"of engine time alone)"
            )

        if args.clean:
            policy = Path(state) / "containers.toml"
            policy.write_text(CONTAINERS_ONLY_POLICY)
            # prune then tamer, then (a fresh fill) tamer then prune: the engine's state after the ls runs and
            # the order must not favour either; each side's figure is the mean of its two runs
            theirs_runs: list[float] = []
            ours_runs: list[float] = []
            left = 0
            rc = 0
            for order in (("prune", "tamer"), ("tamer", "prune")):
                for who in order:
                    if theirs_runs or ours_runs:
                        fill(sandbox, args.containers, images, named_volumes=args.containers // 4)
                    t = time.perf_counter()
                    if who == "prune":
                        subprocess.run(
                            ["docker", "-H", sandbox.host, "container", "prune", "-f"],
                            check=True,
                            stdout=subprocess.DEVNULL,
                        )
                        theirs_runs.append(time.perf_counter() - t)
                    else:
                        proc = subprocess.run(
                            tamer_cmd("clean", "--apply", "--yes", "--quiet", "--policy", str(policy)),
                            env=env,
                            capture_output=True,
                            text=True,
                        )
                        ours_runs.append(time.perf_counter() - t)
                        rc = max(rc, proc.returncode)
                        left += len(engine.containers())
                    print(
                        f"   {who:6s} {(theirs_runs if who == 'prune' else ours_runs)[-1]:6.1f} s", flush=True
                    )
            ours, theirs = statistics.mean(ours_runs), statistics.mean(theirs_runs)
            ratio = ours / theirs
            print(
                f"== clean: tamer clean --apply {ours:6.1f} s (rc {rc}, {left} left) vs "
                f"docker container prune {theirs:6.1f} s  ratio {ratio:5.2f}  (target <= 1.0)  "
                f"{'held' if ratio <= 1.0 and left == 0 else 'MISSED'}"
            )


if __name__ == "__main__":
    main()
