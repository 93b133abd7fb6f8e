"""clean --apply runs its container steps side by side (issue 11): bounded, each step still re-checked and
journaled, the order constraints kept, and a kill -9 in the middle of the concurrent phase leaves a journal
that the next run finishes (nothing removed twice, nothing recorded done that is still there)."""

from __future__ import annotations

import dataclasses
import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from tamer.apply import REMOVAL_WORKERS, Current, apply_plan
from tamer.collect import read_raw_snapshot
from tamer.inventory import build_inventory, engine_identity
from tamer.journal import Journal, StepStatus
from tamer.operation import faults
from tamer.plan import Action, Plan, container_fingerprint, volume_fingerprint
from tamer.policy import load_policy, policy_to_json
from tamer.reasons import Reason

BUSYBOX = "tamer-test/busybox:1"
MONGO = "tamer-test/mongo-standin:1"  # declares VOLUMEs: each run makes anonymous volumes
FAULTY = Path(__file__).parents[1] / "faulty_tamer.py"
POLICY = '[images]\nkeep_tags = ["tamer-test/*"]\n[containers]\nstates = ["exited", "created"]\nolder_than = "0s"\n'


def _names(eng: Any) -> set[str]:
    return set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())


def _volumes(eng: Any) -> set[str]:
    return set(eng.docker("volume", "ls", "-q").split())


def _hand_plan(eng: Any, actions: list[Action], policy_text: str) -> Plan:
    return Plan(
        host=eng.host,
        engine_id=engine_identity(eng.engine.info()),
        policy="hand-built",
        rules=policy_to_json(load_policy(policy_text)),
        made_at="2026-01-01T00:00:00+00:00",
        actions=tuple(actions),
        refusals=(),
    )


def test_container_steps_run_side_by_side_within_the_bound(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Several container steps are in flight at once, never more than the bound; each is journaled."""
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    made = [f"side-{i}" for i in range(10)]
    for name in made:
        eng.docker("create", "--name", name, BUSYBOX)
    inv = build_inventory(read_raw_snapshot(eng.engine))
    ours = [c for c in inv.containers if c.name in made]
    actions = [
        Action("container", c.id, c.name, 0, Reason.CONTAINER_STOPPED, {}, container_fingerprint(c))
        for c in ours
    ]
    plan = _hand_plan(eng, actions, POLICY)
    active: set[int] = set()
    peak = [0]
    lock = threading.Lock()

    def watch(point: str, ctx: dict[str, Any]) -> None:
        with lock:
            if point.endswith(".before"):
                active.add(ctx["idx"])
                peak[0] = max(peak[0], len(active))
            else:
                active.discard(ctx["idx"])
        if point.endswith(".before"):
            time.sleep(0.2)  # hold the step open, so the others have the time to start beside it

    faults.install(watch)
    try:
        journal = Journal(tmp_path / "j.sqlite")
        result = apply_plan(eng.engine, plan, journal, read_current=lambda e: Current(inv))
    finally:
        faults.clear()
    assert peak[0] == REMOVAL_WORKERS > 1, peak  # side by side, and never more than the bound
    assert [s.status for s in result.steps] == [StepStatus.DONE] * len(made)
    assert not set(made) & _names(eng)
    recorded = journal.get(result.run_id)
    assert recorded.status == "done" and all(s.status is StepStatus.DONE for s in recorded.steps)

    # workers=1 is the sequential run of old
    for name in made[:3]:
        eng.docker("create", "--name", name, BUSYBOX)
    inv = build_inventory(read_raw_snapshot(eng.engine))
    ours = [c for c in inv.containers if c.name in made]
    plan = _hand_plan(
        eng,
        [
            Action("container", c.id, c.name, 0, Reason.CONTAINER_STOPPED, {}, container_fingerprint(c))
            for c in ours
        ],
        POLICY,
    )
    peak[0] = 0
    faults.install(watch)
    try:
        apply_plan(eng.engine, plan, journal, read_current=lambda e: Current(inv), workers=1)
    finally:
        faults.clear()
    assert peak[0] == 1


def test_volumes_of_containers_removed_side_by_side_stay_in_that_run(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The order constraint under concurrency: a volume step runs only after every container step before it
    has ended, so it sees each container of this run that released it, whichever thread removed it."""
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    holders = [f"holder-{i}" for i in range(6)]
    for name in holders:
        eng.docker("create", "--name", name, MONGO)
    now = build_inventory(read_raw_snapshot(eng.engine))
    ours = {c.name: c for c in now.containers if c.name in holders}
    held = {m.name: name for name, c in ours.items() for m in c.mounts if m.name}
    assert len(held) >= len(holders)
    # a view in which the volumes already look orphaned, so that only the point of action can refuse them
    blind = dataclasses.replace(
        now,
        containers=tuple(
            dataclasses.replace(c, mounts=()) if c.name in holders else c for c in now.containers
        ),
    )
    vols = {v.name: v for v in now.volumes}
    actions = [
        *(
            Action("container", c.id, c.name, 0, Reason.CONTAINER_STOPPED, {}, container_fingerprint(c))
            for c in ours.values()
        ),
        *(Action("volume", v, v, 0, Reason.VOLUME_ORPHANED, {}, volume_fingerprint(vols[v])) for v in held),
    ]
    policy = POLICY + '[volumes]\norphaned_anonymous_older_than = "0s"\n'
    result = apply_plan(
        eng.engine,
        _hand_plan(eng, actions, policy),
        Journal(tmp_path / "j.sqlite"),
        read_current=lambda e: Current(blind),
    )
    steps = {s.id: s for s in result.steps}
    for c in ours.values():
        assert steps[c.id].status is StepStatus.DONE
    for v, holder in held.items():
        assert steps[v].status is StepStatus.SKIPPED and steps[v].code == Reason.VOLUME_USERS_GO_THIS_RUN
        assert steps[v].facts["users"] == [holder]
    assert set(held) <= _volumes(eng)
    eng.docker("volume", "rm", *held)


@pytest.mark.parametrize("nth", [3, 8, 13])
def test_a_kill_during_the_concurrent_phase_leaves_a_journal_the_next_run_finishes(
    eng: Any, tmp_path: Path, nth: int
) -> None:
    made = [f"kill-{i}" for i in range(12)]
    for i, name in enumerate(made):
        eng.docker("create", "--name", name, MONGO if i % 3 == 0 else BUSYBOX)
    mounted = {
        m["Name"]
        for name in made
        for m in json.loads(eng.docker("inspect", name))[0]["Mounts"]
        if m.get("Name")
    }
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY)
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path / "state")}
    args = ["clean", "--policy", str(policy), "--apply", "--yes"]
    killed = subprocess.run(
        [sys.executable, str(FAULTY), f"@{nth}", *args], capture_output=True, text=True, env=env, timeout=300
    )
    assert killed.returncode == 137, killed.stderr
    # what the killed run recorded: every step marked done is gone; every container still here is pending
    with sqlite3.connect(tmp_path / "state" / "journal.sqlite") as db:
        rows = db.execute("SELECT name, status FROM steps WHERE kind = 'container'").fetchall()
        run_status = db.execute("SELECT status FROM runs").fetchall()
    assert run_status == [("running",)]
    left = _names(eng)
    assert {n for n, s in rows if s == "done"}.isdisjoint(left), rows
    assert all(s == "pending" for n, s in rows if n in left), rows
    assert sum(1 for n, s in rows if s == "pending" and n not in left) <= REMOVAL_WORKERS  # in flight
    resumed = subprocess.run(
        [sys.executable, "-m", "tamer", *args, "--json"], capture_output=True, text=True, env=env, timeout=300
    )
    data = json.loads(resumed.stdout)["data"]
    assert data["resumed"] is True, resumed.stderr
    assert not set(made) & _names(eng)
    statuses = {s["name"]: s["status"] for s in data["steps"] if s["kind"] == "container"}
    assert set(statuses) == set(made) and set(statuses.values()) <= {"done", "gone"}
    assert mounted <= _volumes(eng), "a clean removed a volume with its container"
    again = subprocess.run(
        [sys.executable, "-m", "tamer", "clean", "--policy", str(policy)],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert "did not finish" not in again.stdout
    eng.docker("volume", "rm", *mounted)
