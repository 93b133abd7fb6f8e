"""The only module that removes things: executes a Plan, step by step, with a journal.

Before each removal the object is re-read from the engine and checked against
the fingerprint the plan recorded (still stopped, still unused, same tags);
anything that changed is skipped with the reason, and so is anything the
engine refuses: the exit code then says partial (3). Named volumes are backed
up and the backup verified before removal, or they stay.

If the engine goes away mid-run, the run is marked interrupted and the error
says how to resume; if the process is killed, the journal still shows the run
as running, and the next `clean --apply` finishes it.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tamer.engine import Engine
from tamer.errors import EngineUnreachable, ObjectNotFound, TamerError
from tamer.inventory import RUNNING_STATES, parse_time
from tamer.journal import Journal
from tamer.plan import Action, Plan

# Test-only hooks, for the fault tests: die right after removing step N (before
# journaling it), or pause before each step so a test can restart the engine.
CRASH_AT_ENV = "TAMER_TEST_CRASH_AT"
STEP_DELAY_ENV = "TAMER_TEST_STEP_DELAY"

Backup = Callable[[Engine, str], Path]


@dataclass(frozen=True)
class StepResult:
    idx: int
    kind: str
    id: str
    name: str
    bytes: int
    status: str  # done, gone, skipped, failed
    detail: str


@dataclass(frozen=True)
class ApplyResult:
    run_id: int
    plan_id: str
    resumed: bool
    steps: tuple[StepResult, ...]

    @property
    def reclaimed(self) -> int:
        return sum(s.bytes for s in self.steps if s.status == "done")

    @property
    def exit_code(self) -> int:
        return 3 if any(s.status in ("skipped", "failed") for s in self.steps) else 0


class Changed(TamerError):
    """The object is not what the plan saw: skip it."""


def apply_plan(engine: Engine, plan: Plan, journal: Journal, *, resume_run: int | None = None,
               backup: Backup | None = None, progress: Callable[[int, int], None] | None = None) -> ApplyResult:
    """Execute `plan` (or finish the interrupted run `resume_run`, which holds its own plan).

    Raises EngineUnreachable (with how to resume) when the engine goes away;
    every step done before that is in the journal.
    """
    journal.lock()
    try:
        if resume_run is None:
            run_id = journal.start(plan)
        else:
            run_id = resume_run
            journal.adopt(run_id)
        run = journal.get(run_id)
        crash_at = int(os.environ.get(CRASH_AT_ENV, "-1"))
        delay = float(os.environ.get(STEP_DELAY_ENV, "0"))
        pending = run.pending
        for n, step in enumerate(pending):
            if delay:
                time.sleep(delay)
            action = run.plan.actions[step.idx]
            try:
                status, detail = _execute(engine, action, backup)
            except EngineUnreachable as exc:
                journal.finish(run_id, "interrupted")
                raise EngineUnreachable(f"{exc}\nthe clean stopped at step {step.idx + 1} of {len(run.steps)}; "
                                        "every step before it is recorded. Once the engine is back, run "
                                        "`tamer clean --apply` again: it shows the journal and finishes this "
                                        "run, re-checking each object.") from exc
            if step.idx == crash_at:
                os._exit(137)  # simulate a kill at the worst moment: removed, not yet journaled
            journal.mark(run_id, step.idx, status, detail)
            if progress:
                progress(n + 1, len(pending))
        final = journal.get(run_id)
        partial = any(s.status in ("skipped", "failed") for s in final.steps)
        journal.finish(run_id, "partial" if partial else "done")
        return ApplyResult(run_id=run_id, plan_id=final.plan_id, resumed=resume_run is not None,
                           steps=tuple(StepResult(s.idx, s.kind, s.object_id, s.name, s.bytes, s.status, s.detail)
                                       for s in final.steps))
    finally:
        journal.unlock()


def _execute(engine: Engine, action: Action, backup: Backup | None) -> tuple[str, str]:
    """Re-check one object, then remove it. Returns (status, detail)."""
    try:
        if action.kind == "container":
            _recheck_container(engine, action)
            engine.remove_container(action.id)
        elif action.kind == "volume":
            detail = _recheck_volume(engine, action)
            if action.needs_backup:
                if backup is None:
                    return "skipped", "named volume: no backup support available, so it stays"
                try:
                    path = backup(engine, action.id)
                except TamerError as exc:
                    return "skipped", f"backup failed, volume kept: {exc}"
                detail = f"backed up and verified: {path}"
            engine.remove_volume(action.id)
            return "done", detail
        elif action.kind == "image":
            tags = _recheck_image(engine, action)
            for ref in tags or [action.id]:
                engine.remove_image(ref)
        elif action.kind == "build-cache":
            engine.remove_build_cache(action.id)
        else:
            return "failed", f"unknown kind {action.kind}"
    except ObjectNotFound:
        return "gone", "already gone"
    except Changed as exc:
        return "skipped", f"changed since the plan: {exc}"
    except EngineUnreachable:
        raise
    except TamerError as exc:
        return "skipped", f"the engine refused: {exc}"
    return "done", ""


def _recheck_container(engine: Engine, action: Action) -> None:
    data = engine.inspect_container(action.id)
    state = data.get("State") or {}
    status = str(state.get("Status"))
    if status in RUNNING_STATES:
        raise Changed(f"it is {status} now")
    if status != action.fingerprint.get("state"):
        raise Changed(f"it was {action.fingerprint.get('state')}, now {status}")
    finished = parse_time(state.get("FinishedAt"))
    if (finished.isoformat() if finished else None) != action.fingerprint.get("finished"):
        raise Changed("it ran again since the plan")


def _recheck_volume(engine: Engine, action: Action) -> str:
    data = engine.inspect_volume(action.id)
    # users first: that is the precise reason to keep it (and the local driver's
    # CreatedAt follows its folder's mtime, which a new user can change)
    users = engine.containers_using(volume=action.id)
    if users:
        names = ", ".join(str((u.get("Names") or ["?"])[0]).lstrip("/") for u in users[:3])
        raise Changed(f"now used by {names}")
    created = parse_time(data.get("CreatedAt"))
    if (created.isoformat() if created else None) != action.fingerprint.get("created"):
        raise Changed("a different volume of the same name exists now")
    return ""


def _recheck_image(engine: Engine, action: Action) -> list[str]:
    data = engine.inspect_image(action.id)
    tags = sorted(t for t in data.get("RepoTags") or [] if t != "<none>:<none>")
    if tags != action.fingerprint.get("tags"):
        raise Changed(f"its tags changed to {', '.join(tags) or 'none'}")
    users = engine.containers_using(image=action.id)
    if users:
        raise Changed(f"now used by {len(users)} container(s)")
    return tags
