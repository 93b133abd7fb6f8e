"""Run the tamer CLI with a fault installed: the tests' way to stop a subprocess at an exact step.

    python faulty_tamer.py POINT [ARGS...]      exit 137 (as a SIGKILL would) when POINT is hit
    python faulty_tamer.py @N [ARGS...]         exit 137 at the N-th fault point hit (1-based)
    python faulty_tamer.py - [ARGS...]          no fault; print every point hit to stderr as `fault-point: P`

Installing the handler here, in the test's wrapper, keeps production code free of test switches: tamer
itself reads no environment variable for faults. os._exit runs no cleanup, no finally, no atexit: for
tamer's own code it is as abrupt as kill -9.
"""

from __future__ import annotations

import os
import sys
import threading
from typing import Any

from tamer.cli import main
from tamer.operation import faults


def _install(spec: str) -> None:
    count = [0]
    # clean --apply runs container steps on several threads: `count[0] += 1` is not atomic across
    # them, so two points could read the same count and the N-th point would never be hit (the run
    # then finishes instead of dying). Counting and printing under one lock makes @N exact.
    lock = threading.Lock()

    def handler(point: str, ctx: dict[str, Any]) -> None:
        with lock:
            count[0] += 1
            n = count[0]
            print(f"fault-point: {point}", file=sys.stderr, flush=True)
        if spec == "-":
            return
        if (spec.startswith("@") and n == int(spec[1:])) or point == spec:
            print(f"fault-kill: {point}", file=sys.stderr, flush=True)
            if "proc" in ctx and "dest" in ctx:  # a copy in progress: let it write some, then kill it too
                from tamer.volumes.copy import kill_copy_midway

                kill_copy_midway(ctx["proc"], ctx["dest"])
            os._exit(137)

    faults.install(handler)


if __name__ == "__main__":
    _install(sys.argv[1])
    raise SystemExit(main(sys.argv[2:]))
