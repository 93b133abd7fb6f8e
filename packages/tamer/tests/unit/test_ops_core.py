"""The operation core: one lock, typed steps, stash/commit/rollback from the journal, the fault seam."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any, ClassVar

import pytest
from tamer.operation import (
    Operation,
    OperationLocked,
    StepStatus,
    faults,
    operation_lock,
)


@pytest.fixture(autouse=True)
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    faults.clear()
    return tmp_path / "state"


class Boom(Exception):
    pass


class Counter(Operation):
    kind = "counter"
    steps: ClassVar[tuple[str, ...]] = ("one", "two", "three")
    log: ClassVar[list[str]] = []

    def do_one(self) -> None:
        self.log.append("do one")

    def do_two(self) -> None:
        self.log.append("do two")
        if self.data.get("fail_two"):
            raise Boom("two failed")

    def do_three(self) -> None:
        self.log.append("do three")

    def undo_one(self) -> None:
        self.log.append("undo one")

    def undo_two(self) -> None:
        self.log.append("undo two")


def test_stash_commit_forgets_the_journal() -> None:
    Counter.log = []
    op = Counter.begin("k", {})
    op.stash()
    assert [op.status(s) for s in Counter.steps] == [StepStatus.DONE] * 3
    op.commit()
    assert not op.path.exists() and Counter.load("k") is None
    assert Counter.log == ["do one", "do two", "do three"]


def test_failed_step_is_marked_and_rollback_undoes_in_reverse() -> None:
    Counter.log = []
    op = Counter.begin("k", {"fail_two": True})
    with pytest.raises(Boom):
        op.stash()
    again = Counter.load("k")
    assert again.status("one") is StepStatus.DONE and again.status("two") is StepStatus.FAILED
    assert again.status("three") is StepStatus.PENDING
    assert again.rollback() == ["two", "one"]
    assert Counter.log == ["do one", "do two", "undo two", "undo one"]
    assert Counter.load("k") is None


def test_resume_skips_done_steps_and_repeats_the_interrupted_one() -> None:
    Counter.log = []
    op = Counter.begin("k", {})

    def stop(point: str, ctx: dict[str, Any]) -> None:
        if point == "counter.two.mid":
            raise KeyboardInterrupt  # stands in for a kill after the step did its work, before it was journaled

    faults.install(stop)
    with pytest.raises(KeyboardInterrupt):
        op.stash()
    faults.clear()
    resumed = Counter.load("k")
    assert resumed.pending_steps() == ["two", "three"]
    resumed.stash()
    assert Counter.log == ["do one", "do two", "do two", "do three"]


def test_begin_refuses_when_an_unfinished_one_exists() -> None:
    Counter.begin("k", {})
    with pytest.raises(Exception, match="unfinished counter of k"):
        Counter.begin("k", {})


def test_fault_points_are_inert_without_a_handler() -> None:
    faults.hit("anything")
    assert faults.seen == []


def test_lock_is_reentrant_in_process() -> None:
    with operation_lock("outer"), operation_lock("inner"):
        pass
    with operation_lock("again"):
        pass


def test_second_process_gets_a_clear_error_naming_the_holder(state: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            textwrap.dedent("""
        import sys, time
        from tamer.operation import operation_lock
        with operation_lock("volume move demo"):
            print("held", flush=True)
            time.sleep(30)
        """),
        ],
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(OperationLocked) as err, operation_lock("clean --apply"):
            pass
        msg = str(err.value)
        assert f"pid {holder.pid}" in msg and "tamer volume move demo" in msg and "wait" in msg
    finally:
        holder.kill()
        holder.wait()
    with operation_lock("clean --apply", wait=5):  # free again once the holder is gone
        pass
