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
    return subprocess.run([sys.executable, "-m", "tamer", *args], env={**os.environ, "DOCKER_HOST": host}).returncode


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


DEMO_STEPS = [show_inventory]


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
