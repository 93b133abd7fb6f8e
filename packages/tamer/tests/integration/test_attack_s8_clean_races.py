"""Session 8 attacks on clean --apply: races at the point of action, with the removals side by side.

Each test plans with a real policy on the private engine, keeps only its own objects in the plan (the
session's shared images must stay), then changes the host at the last moment: just before the engine is
asked to remove (by wrapping the engine's remove call, which works whatever the code around it looks
like), or at the `clean.<idx>.rechecked` fault point, between an object's re-check and its removal.
"""

from __future__ import annotations

import dataclasses
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.apply import Current, apply_plan
from tamer.collect import read_raw_snapshot
from tamer.inventory import build_inventory
from tamer.journal import Journal, StepStatus
from tamer.operation import faults
from tamer.plan import Plan, make_plan
from tamer.policy import load_policy
from tamer.reasons import Reason
from tamer.sandbox import build_busybox_image

BUSYBOX = "tamer-test/busybox:1"

IMAGES_POLICY = """\
version = 1
[containers]
states = ["exited", "dead", "created"]
older_than = "0s"
[images]
dangling = true
unused_older_than = "0s"
keep_newest = 0
[volumes]
orphaned_anonymous_older_than = "0s"
"""


@pytest.fixture(autouse=True)
def _no_fault_handlers() -> Iterator[None]:
    yield
    faults.clear()


def _current(eng: Any) -> Current:
    return Current(build_inventory(read_raw_snapshot(eng.engine)))


def _plan_of(eng: Any, keep: Callable[[str, str], bool]) -> tuple[Plan, Current]:
    """The policy's plan on the live host, narrowed to the actions `keep(kind, name)` accepts."""
    current = _current(eng)
    plan = make_plan(current.inventory, load_policy(IMAGES_POLICY), backup_available=False)
    return dataclasses.replace(plan, actions=tuple(a for a in plan.actions if keep(a.kind, a.name))), current


def _image_id(eng: Any, ref: str) -> str | None:
    out = eng.docker("image", "inspect", "--format", "{{.Id}}", ref, check=False).strip()
    return out or None


@pytest.mark.parametrize("tags", [1, 2])
def test_a_tag_moved_to_another_image_at_the_last_moment_costs_that_image_nothing(
    eng: Any, tmp_path: Path, tags: int
) -> None:
    old = build_busybox_image(eng.engine, "s8race/app:1", extra_files={"/v": b"old"})
    if tags == 2:
        eng.docker("tag", "s8race/app:1", "s8race/app:2")
    moved = "s8race/app:1"  # (of two, the one a removal by name took last... or first, in sorted order)
    plan, current = _plan_of(eng, lambda kind, name: kind == "image" and name.startswith("s8race/"))
    assert [a.id for a in plan.actions] == [old], plan.actions
    # another image, built just now, whose only name is the tag the plan's image holds at its re-check
    new = build_busybox_image(eng.engine, "s8race/new:1", extra_files={"/v": b"new"})
    real_remove = eng.engine.remove_image
    calls: list[str] = []

    def remove_after_a_retag(ref: str) -> None:
        if not calls:  # the build (or `docker tag`) lands just before the engine takes the first removal
            eng.docker("tag", new, moved)
            eng.docker("rmi", "s8race/new:1")
        calls.append(ref)
        real_remove(ref)

    eng.engine.remove_image = remove_after_a_retag  # type: ignore[method-assign]
    try:
        result = apply_plan(eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: current)
    finally:
        del eng.engine.remove_image
    assert _image_id(eng, moved) == new, f"the image that took {moved} lost it (or was deleted): {calls}"
    assert result.steps[0].status in (StepStatus.DONE, StepStatus.SKIPPED), result.steps
    if result.steps[0].status is StepStatus.SKIPPED:
        assert result.steps[0].code == Reason.TAGS_CHANGED.value
    else:
        assert _image_id(eng, old) is None  # the plan's image itself went, as planned


def test_users_arriving_between_the_recheck_and_the_removal_keep_everything(eng: Any, tmp_path: Path) -> None:
    """While removals run side by side: a container started, a container that mounts an orphaned volume
    and one that takes the planned image, each between that object's re-check and its removal. The engine
    enforces these (409): each object stays, the step says why, and every other step is done."""
    names = [f"s8race-c{i}" for i in range(6)]
    for name in names:
        eng.docker("create", "--name", name, BUSYBOX, "sleep", "600")
    eng.docker("run", "--name", "s8race-orphaner", "-v", "/data", BUSYBOX, "sh", "-c", "echo kept > /data/f")
    volume = json.loads(eng.docker("inspect", "s8race-orphaner"))[0]["Mounts"][0]["Name"]
    eng.docker("rm", "s8race-orphaner")
    image = build_busybox_image(eng.engine, "s8race/taken:1", extra_files={"/v": b"t"})
    ours = {*names, volume, "s8race/taken:1"}
    plan, current = _plan_of(eng, lambda kind, name: name in ours)
    by_name = {a.name: i for i, a in enumerate(plan.actions)}
    assert set(by_name) == ours, by_name
    lock = threading.Lock()
    did: list[str] = []

    def at(point: str, ctx: dict[str, Any]) -> None:
        if not point.endswith(".rechecked"):
            return
        name = plan.actions[ctx["idx"]].name
        with lock:
            if name == names[2]:
                eng.docker("start", name)
            elif name == volume:
                eng.docker("create", "--name", "s8race-vol-user", "-v", f"{volume}:/data", BUSYBOX)
            elif name == "s8race/taken:1":
                eng.docker("create", "--name", "s8race-img-user", image)
            else:
                return
            did.append(name)

    faults.install(at)
    result = apply_plan(eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: current)
    faults.clear()
    assert sorted(did) == sorted([names[2], volume, "s8race/taken:1"]), did
    status = {s.name: (s.status, s.code) for s in result.steps}
    kept = {names[2], volume, "s8race/taken:1"}
    for name in kept:
        assert status[name][0] is StepStatus.SKIPPED, status
    assert status[volume][1] == Reason.IN_USE_NOW.value, status
    assert all(status[n] == (StepStatus.DONE, Reason.REMOVED.value) for n in names if n not in kept), status
    left = set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())
    assert names[2] in left and not (set(names) - {names[2]}) & left
    assert volume in eng.docker("volume", "ls", "-q").split()
    assert _image_id(eng, "s8race/taken:1") == image
    assert eng.docker("run", "--rm", "-v", f"{volume}:/data", BUSYBOX, "cat", "/data/f").strip() == "kept"
    assert result.exit_code == 3


def test_a_container_renamed_while_the_removals_run_stays(eng: Any, tmp_path: Path) -> None:
    """The plan is re-derived once, when the run starts; a 2,000-container run lasts a minute. A container
    renamed meanwhile (a user moving it into keep_names to protect it) is kept at its re-check, whatever
    the plan read."""
    names = [f"s8race-r{i}" for i in range(5)]
    for name in names:
        eng.docker("create", "--name", name, BUSYBOX)
    plan, current = _plan_of(eng, lambda kind, name: name in names)
    assert len(plan.actions) == len(names)
    target = next(i for i, a in enumerate(plan.actions) if a.name == names[3])

    def at(point: str, ctx: dict[str, Any]) -> None:
        if point == f"clean.{target}.before":
            eng.docker("rename", names[3], "s8race-protected")

    faults.install(at)
    result = apply_plan(eng.engine, plan, Journal(tmp_path / "j.sqlite"), read_current=lambda e: current)
    faults.clear()
    left = set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())
    assert "s8race-protected" in left, "renamed during the run, removed under its old name's verdict"
    assert not set(names) & left
    step = result.steps[target]
    assert step.status is StepStatus.SKIPPED and step.code == Reason.STATE_CHANGED.value, step
