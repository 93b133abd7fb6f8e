"""`make demo`: both tools in a minute or two, on a throwaway sandbox engine.

tamer: starts a private Docker engine (never the user's), fills it with the
usual clutter and shows what `tamer` sees. faithful: runs its own demo script.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "demo-out"


def banner(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m" if sys.stdout.isatty() else f"\n== {text}", flush=True)


def tamer(host: str, *args: str) -> int:
    print(f"$ tamer {shlex.join(args)}", flush=True)
    return subprocess.run(
        [sys.executable, "-m", "tamer", *args], env={**os.environ, "DOCKER_HOST": host}
    ).returncode


def tamer_demo() -> None:
    from tamer.clutter import make_clutter
    from tamer.sandbox import PrivateEngine, why_no_private_engine

    reason = why_no_private_engine()
    if reason:
        print(f"!!! skipping the tamer demo: {reason}")
        return
    banner("tamer: a sandbox Docker engine with a few months of clutter")
    started = time.monotonic()
    with PrivateEngine.create() as sandbox:
        make_clutter(sandbox.engine)
        print(f"(sandbox engine at {sandbox.host}, clutter made in {time.monotonic() - started:.0f}s)")
        for script in DEMO_STEPS:
            script(sandbox.host)


def show_inventory(host: str) -> None:
    banner("What is on this host, what it costs, what could go")
    tamer(host, "df")
    banner("Volumes: named or anonymous, who uses them, which image VOLUME made them")
    tamer(host, "ls", "volumes")
    banner("Stopped containers, biggest first")
    tamer(host, "ls", "containers", "--filter", "state=exited,created")
    banner("Dangling images")
    tamer(host, "ls", "images", "--filter", "dangling=true")


def show_cleanup(host: str) -> None:
    import tempfile

    with tempfile.TemporaryDirectory() as state:
        os.environ["TAMER_STATE_DIR"] = state  # the demo's journal lives and dies with the sandbox
        banner("Cleanup by policy: first the plan (nothing is removed)")
        tamer(host, "plan")
        banner("Then the same plan, applied (journaled; named volumes and running containers untouched)")
        tamer(host, "clean", "--apply", "--yes")
        banner("What is left")
        tamer(host, "df")
        del os.environ["TAMER_STATE_DIR"]


DEMO_STEPS = [show_inventory, show_cleanup]


def show_volumes(host: str) -> None:
    """tamer run with named volumes (the essay's Mongo), then a verified move to another directory."""
    import tempfile

    from tamer.engine import connect
    from tamer.sandbox import mongo_standin

    mongo_standin(connect(host), "demo/mongo-standin:1")  # declares VOLUME /data/db and /data/configdb
    place = Path(tempfile.mkdtemp(prefix="tamer-demo-volumes-"))
    os.environ.setdefault("TAMER_STATE_DIR", str(place / "state"))
    banner(
        "tamer run: the essay's typo (-v mongo_config/data/configdb) would leave data in an anonymous volume"
    )
    tamer(
        host,
        "run",
        "demo/mongo-standin:1",
        "--name",
        "mongo_container",
        "-p",
        "27017:27017",
        "-v",
        "mongo_data:/data/db",
        "-v",
        "mongo_config/data/configdb",
    )
    banner(
        "tamer run: every declared VOLUME gets a named volume on the big disk; restart policy, log rotation"
    )
    tamer(
        host,
        "run",
        "demo/mongo-standin:1",
        "--name",
        "mongo_container",
        "-p",
        "27017:27017",
        "--at",
        str(place / "HDD"),
    )
    subprocess.run(
        [
            "docker",
            "-H",
            host,
            "exec",
            "mongo_container",
            "sh",
            "-c",
            "seq 1 20000 > /data/db/collection-0.wt",
        ],
        check=False,
    )
    tamer(host, "volume", "ls")
    banner("tamer volume move: copy, verify, re-create the volume elsewhere and the container as it was")
    dest = str(place / "HDD2" / "mongo_container-data-db")
    tamer(host, "volume", "move", "mongo_container-data-db", "--to", dest, "--stop-users")
    tamer(host, "volume", "move", "mongo_container-data-db", "--to", dest, "--stop-users", "--apply", "--yes")
    banner("tamer volume backup and verify")
    tamer(
        host,
        "volume",
        "backup",
        "mongo_container-data-db",
        "-o",
        str(place / "mongo_data.tar.zst"),
        "--pause-users",
    )
    tamer(host, "volume", "verify", str(place / "mongo_data.tar.zst"))
    import shutil

    shutil.rmtree(place, ignore_errors=True)


DEMO_STEPS.append(show_volumes)


def show_history(host: str) -> None:
    """tamer record over a few (faked) days while a volume grows, then tamer history and its HTML chart."""
    import shutil
    import tempfile

    from tamer.engine import connect

    fake = shutil.which("faketime")
    with tempfile.TemporaryDirectory() as state:
        os.environ["TAMER_STATE_DIR"] = state  # the demo's history lives and dies with the sandbox
        banner("History: a snapshot a day (`tamer record` on a timer) while a database volume grows")
        folder = Path(connect(host).create_volume("demo_growing_db")["Mountpoint"])
        for day in range(4):
            with open(folder / f"chunk{day}.bin", "wb") as fh:
                fh.write(os.urandom((10 + 15 * day) * 1_000_000))
            args = ["record"]
            if fake:  # stamp the snapshots days apart, as a daily timer would
                offset = f"-{3 - day}d"
                print(f"$ faketime {offset} tamer record", flush=True)
                subprocess.run(
                    [fake, "-f", offset, sys.executable, "-m", "tamer", *args],
                    env={**os.environ, "DOCKER_HOST": host},
                    check=False,
                )
            else:
                tamer(host, *args)
        banner("What grew, the top growers, and when the disk fills at this rate")
        report = OUT / "history"
        span = [] if fake else ["--min-span", "1s"]  # without faketime the snapshots are seconds apart
        tamer(host, "history", "--by", "volume", "--report", str(report), *span)  # prints the page's path
        del os.environ["TAMER_STATE_DIR"]


DEMO_STEPS.append(show_history)


def show_metrics(host: str) -> None:
    """tamer metrics: the Prometheus text format (what `tamer serve` answers on /metrics)."""
    import tempfile

    with tempfile.TemporaryDirectory() as state:
        banner("Metrics for Prometheus: `tamer metrics` (what `tamer serve` answers on /metrics)")
        print("$ tamer metrics | head -15", flush=True)
        proc = subprocess.run(
            [sys.executable, "-m", "tamer", "metrics", "-q"],
            env={**os.environ, "DOCKER_HOST": host, "TAMER_STATE_DIR": state},
            capture_output=True,
            text=True,
            check=False,
        )
        lines = proc.stdout.splitlines()
        print("\n".join(lines[:15]) or proc.stderr.strip())
        samples = sum(1 for line in lines if line and not line.startswith("#"))
        print(f"... ({samples} samples in all)")


DEMO_STEPS.append(show_metrics)


def show_compose(host: str) -> None:
    """tamer compose check on the essay's Mongo as a compose service, then --fix and the copy checked again."""
    import tempfile

    from tamer.engine import connect
    from tamer.sandbox import mongo_standin

    mongo_standin(connect(host), "demo/mongo-standin:1")  # declares VOLUME /data/db and /data/configdb
    with tempfile.TemporaryDirectory(prefix="tamer-demo-compose-") as folder:
        path = Path(folder) / "shop" / "compose.yaml"  # the folder names the compose project: shop
        path.parent.mkdir()
        path.write_text(
            "# the essay's Mongo, as a compose service (no volumes: mapped)\n"
            "services:\n"
            "  mongo:\n"
            "    image: demo/mongo-standin:1  # stands in for `mongo`\n"
            "    ports:\n"
            '      - "27017:27017"\n'
        )
        banner("Compose files: the essay's Mongo service, checked before `docker compose up`")
        tamer(host, "compose", "check", str(path))
        banner("--fix: a copy next to it with every anonymous volume named (the original stays)")
        tamer(host, "compose", "check", str(path), "--fix")
        banner("The copy, checked: no anonymous volume left (restart, logs, name: your call)")
        tamer(host, "compose", "check", str(path.with_name("compose.tamer.yaml")))


DEMO_STEPS.append(show_compose)


def faithful_demo() -> None:
    script = ROOT / "scripts" / "faithful_demo.py"
    if not script.exists():
        return
    banner("faithful: sampling is not taking the argmax")
    OUT.mkdir(exist_ok=True)
    subprocess.run([sys.executable, str(script), str(OUT)], check=False)


if __name__ == "__main__":
    t0 = time.monotonic()
    only = sys.argv[1:] or ["tamer", "faithful"]
    if "tamer" in only:
        tamer_demo()
    if "faithful" in only:
        faithful_demo()
    print(f"\n(demo finished in {time.monotonic() - t0:.0f}s)")
