"""Attacks on the orphan clock with a wrong system clock (issue 10, cases it does not name).

A host that boots with no RTC runs at 1970 until NTP catches up; a VM resumed
from a snapshot runs days behind. A tamer run under such a clock must never
make a volume look older than it is: the next run, at the right time, would
remove volumes that were orphaned only minutes ago.
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

MONGO = "tamer-test/mongo-standin:1"
BUSYBOX = "tamer-test/busybox:1"
EPOCH_DAY = "@1970-01-02 00:00:00"

needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")


def _tamer(eng: Any, state: Path, fake: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*(("faketime", "-f", fake) if fake else ()), sys.executable, "-m", "tamer", *args]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _json(eng: Any, state: Path, fake: str | None, *args: str) -> tuple[int, dict[str, Any]]:
    proc = _tamer(eng, state, fake, *args, "--json")
    try:
        return proc.returncode, json.loads(proc.stdout)
    except ValueError:
        raise AssertionError(f"not JSON (rc {proc.returncode}): {proc.stdout}\n{proc.stderr}") from None


def _anonymous_of(eng: Any, container: str) -> list[str]:
    return sorted(m["Name"] for m in json.loads(eng.docker("inspect", container))[0]["Mounts"])


def _volumes(eng: Any) -> set[str]:
    return set(eng.docker("volume", "ls", "-q").split())


@needs_faketime
@pytest.mark.parametrize("first_look", ["real-then-1970", "1970-only", "in-use-at-1970"])
def test_a_run_under_a_1970_clock_never_ages_a_volume(eng: Any, tmp_path: Path, first_look: str) -> None:
    eng.docker("run", "--name", "epoch-victim", MONGO, "true")
    anon = _anonymous_of(eng, "epoch-victim")
    if first_look == "in-use-at-1970":
        # tamer sees them in use (a stopped container) while the clock says 1970, then they are orphaned
        assert _tamer(eng, tmp_path, EPOCH_DAY, "df").returncode == 0
        eng.docker("rm", "epoch-victim")
    else:
        eng.docker("rm", "epoch-victim")
        if first_look == "real-then-1970":
            assert _tamer(eng, tmp_path, None, "df").returncode == 0  # first seen orphaned: now
        assert _tamer(eng, tmp_path, EPOCH_DAY, "plan").returncode == 0
    # the clock is right again, minutes later: nothing has been orphaned for 7 days
    rc, env = _json(eng, tmp_path, None, "clean", "--apply", "--yes")
    assert rc == 0, env
    assert set(anon) <= _volumes(eng), f"orphaned minutes ago, removed after a run at 1970: {env['data']}"
