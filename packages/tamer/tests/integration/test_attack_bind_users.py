"""Attack: a container that bind-mounts a volume's folder (`-v /var/lib/docker/volumes/X/_data:/live`, or a
folder inside it) uses the volume, though the engine lists no user for it by name.

Before the fix, a default clean eight days later removed the "orphaned" anonymous volume and deleted the
folder under the running container. The plan must count such containers as users, and apply must check
them again, live, at the moment of removal.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from tamer.apply import Current, apply_plan
from tamer.collect import read_raw_snapshot
from tamer.inventory import build_inventory, engine_identity
from tamer.journal import Journal, StepStatus
from tamer.plan import Action, Plan, volume_fingerprint
from tamer.policy import load_policy, policy_to_json
from tamer.reasons import Reason

BUSYBOX = "tamer-test/busybox:1"
needs_faketime = pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")


def _orphan_with_data(eng: Any, name: str) -> tuple[str, Path]:
    eng.docker(
        "run",
        "--name",
        name,
        "-v",
        "/data",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir -p /data/sub && echo precious > /data/sub/f",
    )
    volume = json.loads(eng.docker("inspect", name))[0]["Mounts"][0]["Name"]
    eng.docker("rm", name)
    return volume, Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", volume).strip())


def _tamer(eng: Any, state: Path, shift: str | None, *args: str) -> subprocess.CompletedProcess[str]:
    cmd = [*(("faketime", "-f", shift) if shift else ()), sys.executable, "-m", "tamer", *args]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


@needs_faketime
@pytest.mark.parametrize("bound", ["_data", "_data/sub"])
@pytest.mark.parametrize("state", ["running", "stopped"])
def test_a_volume_whose_folder_a_container_binds_is_never_removed(
    eng: Any, tmp_path: Path, bound: str, state: str
) -> None:
    volume, data = _orphan_with_data(eng, f"bind-src-{state}-{bound.replace('/', '-')}")
    source = data.parent / bound
    if state == "running":
        eng.docker("run", "-d", "--name", "binder", "-v", f"{source}:/live", BUSYBOX, "sleep", "300")
    else:
        eng.docker(
            "create", "--name", "binder", "--label", "keep=1", "-v", f"{source}:/live", BUSYBOX, "true"
        )
    assert _tamer(eng, tmp_path, None, "df").returncode == 0  # first seen orphaned: now
    proc = _tamer(eng, tmp_path, "+8d", "clean", "--apply", "--yes", "--json")
    assert proc.returncode in (0, 3), proc
    assert volume in eng.docker("volume", "ls", "-q").split(), "removed under a container's bind mount"
    assert (data / "sub" / "f").read_text() == "precious\n"
    refusals = {r["id"]: r for r in json.loads(proc.stdout)["data"]["plan"]["refusals"]}
    assert refusals[volume]["code"] in ("volume-in-use", "volume-used-by-stopped"), refusals.get(volume)
    assert "binder" in refusals[volume]["facts"]["users"]


def test_apply_rechecks_bind_users_whatever_the_plan_says(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    volume, data = _orphan_with_data(eng, "bind-src-apply")
    current = Current(build_inventory(read_raw_snapshot(eng.engine)))
    v = next(x for x in current.inventory.volumes if x.name == volume)
    # a plan made before the binder started (hand-built: the planner would now refuse it)
    policy = load_policy("")
    plan = Plan(
        host=eng.host,
        engine_id=engine_identity(eng.engine.info()),
        policy="hand-built",
        rules=policy_to_json(policy),
        made_at="2026-01-01T00:00:00+00:00",
        actions=(Action("volume", volume, volume, 0, Reason.VOLUME_ORPHANED, {}, volume_fingerprint(v)),),
        refusals=(),
    )
    eng.docker("run", "-d", "--name", "late-binder", "-v", f"{data}:/live", BUSYBOX, "sleep", "300")
    # the host as read before the binder came, eight days on: the re-derivation allows the removal
    inv = current.inventory
    stale_but_allowing = Current(
        dataclasses.replace(inv, taken_at=inv.taken_at + timedelta(days=8)),
        orphan_clock={volume: inv.taken_at},
    )
    result = apply_plan(
        eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: stale_but_allowing
    )
    step = result.steps[0]
    assert step.status is StepStatus.SKIPPED and step.code == Reason.IN_USE_NOW, step
    assert (data / "sub" / "f").read_text() == "precious\n"


@needs_faketime
@pytest.mark.parametrize("inside", ["", "/sub"])
def test_a_volume_whose_folder_another_volume_binds_is_never_removed(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, inside: str
) -> None:
    """`docker volume create -o type=none -o o=bind -o device=<A's _data>` B: A looks orphaned, but removing
    A deletes B's data (the engine deletes A's folder); A must stay, in the plan and at the point of action."""
    volume, data = _orphan_with_data(eng, "shared-src" + inside.replace("/", "-"))
    other = "shares-a" + inside.replace("/", "-")
    eng.docker("volume", "create", "-o", "type=none", "-o", "o=bind", "-o", f"device={data}{inside}", other)
    eng.docker("run", "-d", "--name", "user-of-b", "-v", f"{other}:/live", BUSYBOX, "sleep", "300")
    assert _tamer(eng, tmp_path, None, "df").returncode == 0
    proc = _tamer(eng, tmp_path, "+8d", "clean", "--apply", "--yes", "--json")
    assert proc.returncode in (0, 3), proc
    assert volume in eng.docker("volume", "ls", "-q").split(), "removed a folder another volume's data is in"
    assert (data / "sub" / "f").read_text() == "precious\n"
    refusals = {r["id"]: r for r in json.loads(proc.stdout)["data"]["plan"]["refusals"]}
    assert refusals[volume]["code"] == "folder-shared" and refusals[volume]["facts"]["volumes"] == [other]
    # at the point of action, whatever the plan says
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "apply"))
    inv = build_inventory(read_raw_snapshot(eng.engine))
    v = next(x for x in inv.volumes if x.name == volume)
    plan = Plan(
        host=eng.host,
        engine_id=engine_identity(eng.engine.info()),
        policy="hand-built",
        rules=policy_to_json(load_policy("")),
        made_at="2026-01-01T00:00:00+00:00",
        actions=(Action("volume", volume, volume, 0, Reason.VOLUME_ORPHANED, {}, volume_fingerprint(v)),),
        refusals=(),
    )
    blind = dataclasses.replace(
        inv,
        taken_at=inv.taken_at + timedelta(days=8),
        volumes=tuple(x for x in inv.volumes if x.name != other),
    )
    result = apply_plan(
        eng.engine,
        plan,
        Journal(tmp_path / "j.sqlite"),
        read_current=lambda e: Current(blind, orphan_clock={volume: inv.taken_at}),
    )
    step = result.steps[0]
    assert step.status is StepStatus.SKIPPED and step.code == Reason.FOLDER_SHARED, step
    assert (data / "sub" / "f").read_text() == "precious\n"
