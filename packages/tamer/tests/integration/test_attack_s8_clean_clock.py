"""Session 8 attacks on clean's age rules: tamer's clock ahead of the engine's (cases issue 10 does not name).

The engine stamps a container's FinishedAt and Created, a volume's CreatedAt and the events `tamer watch`
records in its own clock; tamer judged their age against its own. When tamer runs in a VM, a container or
on another host (-H) whose clock is ahead of the engine's, everything looked old: a container stopped a
second ago and a volume orphaned a second ago went under a "1d" rule. Ages are judged against the earlier
of the two clocks, so neither clock running ahead can make anything look older than it is.
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

POLICY = """\
version = 1
[containers]
states = ["exited", "dead", "created"]
older_than = "1d"
[volumes]
orphaned_anonymous_older_than = "1d"
"""


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


@needs_faketime
@pytest.mark.parametrize("ahead", ["+30d", "+2d"])
def test_tamer_clock_ahead_of_the_engine_ages_nothing(eng: Any, tmp_path: Path, ahead: str) -> None:
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    state = tmp_path / "state"
    eng.docker("run", "--name", "s8-ahead-exited", BUSYBOX, "true")
    eng.docker("create", "--name", "s8-ahead-created", BUSYBOX, "true")
    eng.docker("run", "--name", "s8-ahead-orphaner", "-v", "/data", BUSYBOX, "sh", "-c", "echo x > /data/f")
    anon = [m["Name"] for m in json.loads(eng.docker("inspect", "s8-ahead-orphaner"))[0]["Mounts"]]
    eng.docker("rm", "s8-ahead-orphaner")  # orphaned now, by the engine's clock and ours
    assert _tamer(eng, state, None, "df").returncode == 0  # tamer first sees it orphaned at the right time

    rc, env = _json(eng, state, ahead, "plan", "--policy", str(policy))
    assert rc == 0, env
    planned = {a["name"] for a in env["data"]["actions"]}
    assert not planned & {"s8-ahead-exited", "s8-ahead-created", *anon}, env["data"]["actions"]
    # the plan says why nothing went: ages judged by the engine's clock, and the clocks differ
    assert any("clock" in w for w in env["data"]["warnings"]), env["data"]["warnings"]

    rc, env = _json(eng, state, ahead, "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0, env
    names = set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())
    assert {"s8-ahead-exited", "s8-ahead-created"} <= names, "stopped seconds ago, removed under a 1d rule"
    assert set(anon) <= set(eng.docker("volume", "ls", "-q").split()), "orphaned seconds ago, removed"


@needs_faketime
def test_a_clock_behind_still_ages_nothing_and_a_right_clock_still_cleans(eng: Any, tmp_path: Path) -> None:
    """The fix must not stop cleaning: with both clocks right, what is old enough goes (a 0s rule here)."""
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY.replace('"1d"', '"0s"', 1))
    state = tmp_path / "state"
    eng.docker("run", "--name", "s8-right-exited", BUSYBOX, "true")
    rc, env = _json(eng, state, "-2d", "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0, env
    assert "s8-right-exited" in eng.docker("ps", "-a", "--format", "{{.Names}}").split()
    rc, env = _json(eng, state, None, "plan", "--policy", str(policy))
    assert rc == 0, env
    assert not any("clock" in w for w in env["data"]["warnings"]), env["data"]["warnings"]
    rc, env = _json(eng, state, None, "clean", "--policy", str(policy), "--apply", "--yes")
    assert rc == 0, env
    assert "s8-right-exited" not in eng.docker("ps", "-a", "--format", "{{.Names}}").split()
