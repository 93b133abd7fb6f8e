"""Session 8 attacks on clean's age rules: tamer's clock against the engine's.

The engine stamps a container's FinishedAt and Created and a volume's CreatedAt by its own clock; tamer
judges their age by its own (the team's tests move tamer's clock alone with faketime to stand for days
passing, tests/integration/test_clean_safety.py). When tamer's clock is ahead of the engine's (a VM or a
Docker Desktop whose clock drifted, `-H` to another host), a container stopped a second ago looks days
old: with tamer 30 days ahead, a "1d" rule removed it. Judging by the engine's clock conflicts with how
those tests stand for elapsed time (left to the coordinator); until then the plan says so, loudly.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")


def _json(eng: Any, state: Path, fake: str | None, *args: str) -> tuple[int, dict[str, Any]]:
    cmd = [*(("faketime", "-f", fake) if fake else ()), sys.executable, "-m", "tamer", *args, "--json"]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


@needs_faketime
@pytest.mark.parametrize(("shift", "says"), [("+2d", "ahead of"), ("-3h", "behind"), (None, None)])
def test_a_plan_says_when_tamers_clock_and_the_engines_disagree(
    eng: Any, tmp_path: Path, shift: str | None, says: str | None
) -> None:
    eng.docker("run", "--name", "s8-clock-exited", BUSYBOX, "true")
    rc, env = _json(eng, tmp_path / "state", shift, "plan")
    assert rc == 0, env
    skew = [w for w in env["data"]["warnings"] if "clock" in w and "engine" in w]
    if says is None:
        assert not skew, env["data"]["warnings"]
    else:
        assert len(skew) == 1 and says in skew[0] and "NTP" in skew[0], env["data"]["warnings"]
