"""The only module that removes things: executes a Plan, step by step, with a journal.

A plan is an input, never a permission. Whatever it says, this module:
- refuses an engine other than the one the plan was made on (`docker info` ID);
- re-derives every action from the plan's recorded policy and the host as it
  is now, and does only what both the plan and that re-derivation allow (a
  plan can narrow a clean, never widen it);
- re-checks each object against the live engine at the moment of removal:
  never a running or restarted container, never a volume any container mounts,
  never an image a container uses, never a volume whose _data is a symlink,
  and never a named volume (as the engine says now, whatever the plan claims)
  without a backup of its current data that was verified and proven to
  restore it (backup_before_removal);
- removes a container without its volumes, restarts their orphan clock, and
  never removes those volumes in the same run.

Steps end as done, gone, skipped or failed, each with a reason code; any skip
makes the exit code partial (3). One clean at a time (tamer.operation's one
lock). If the engine goes away mid-run, the run is marked interrupted and the
error says how to resume; if the process is killed, the journal still shows
the run as running, and the next `clean --apply` finishes it. Faults are
injected through tamer.operation.faults (points `clean.<idx>.before`,
`clean.<idx>.rechecked` between an object's re-check and its removal, and
`clean.<idx>.after`, between a removal and its journal entry).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from tamer.engine import Engine
from tamer.errors import EngineUnreachable, ObjectNotFound, TamerError
from tamer.inventory import (
    Inventory,
    engine_identity,
)
from tamer.journal import Journal, Run, StateUnwritable, Step, StepStatus
from tamer.operation import faults, operation_lock
from tamer.plan import Action, LastUsed, Plan, make_plan
from tamer.policy import Policy, policy_from_json, policy_to_json
from tamer.reasons import Reason
from tamer.recheck import Keep, recheck_container, recheck_image, recheck_volume
from tamer.sealing import FORMAT, PlanRefused, open_plan, plan_key, seal_plan
from tamer.state import state_dir

Backup = Callable[[Engine, str], Path]
Facts = dict[str, Any]


REMOVAL_WORKERS = 4
"""How many container steps of a clean run at once (apply_plan's `workers`).

The engine takes tens of milliseconds to remove a stopped container, most of it waiting (containerd, the
layer store, its own fsyncs), so a few removals side by side overlap those waits: measured with
bench/tamer_fast.py --clean. More than a few adds little on a small host and only loads the engine.
Only container steps run side by side: they depend on nothing else in a plan, while images and volumes
must wait for the containers that hold them (and a volume for its orphan clock), so each of those runs
alone, after every step before it has ended."""


class WrongEngine(TamerError):
    """The engine answering is not the one the plan was made on."""


@dataclass(frozen=True)
class Current:
    """The host as it is now, for re-deriving a plan: inventory, usage history and the orphan clock."""

    inventory: Inventory
    history: LastUsed = field(default_factory=dict)
    orphan_clock: Mapping[str, datetime] = field(default_factory=dict)


Reader = Callable[[Engine], Current]


@dataclass(frozen=True)
class StepResult:
    idx: int
    kind: str
    id: str
    name: str
    bytes: int
    status: StepStatus
    code: str
    facts: Facts


@dataclass(frozen=True)
class ApplyResult:
    run_id: int
    plan_id: str
    resumed: bool
    steps: tuple[StepResult, ...]

    @property
    def reclaimed(self) -> int:
        return sum(s.bytes for s in self.steps if s.status is StepStatus.DONE)

    @property
    def exit_code(self) -> int:
        return 3 if any(s.status in (StepStatus.SKIPPED, StepStatus.FAILED) for s in self.steps) else 0


class _Midway(Exception):
    """The engine began deleting a volume's files and stopped with an error: part of it may be gone."""

    def __init__(self, facts: Facts) -> None:
        super().__init__(str(facts.get("error")))
        self.facts = facts


def _remove_volume(engine: Engine, name: str, archive: Path | None) -> None:
    """engine.remove_volume, saying honestly when it failed midway (the local driver deletes file by file, so
    an immutable file or a mount inside stops it with the rest already deleted) and where the backup is."""
    try:
        engine.remove_volume(name)
    except (ObjectNotFound, EngineUnreachable):
        raise
    except TamerError as exc:
        users = engine.containers_using(volume=name)
        if users:  # a container took it between the re-check and the removal: the engine deleted nothing
            raise Keep(
                Reason.IN_USE_NOW,
                {"users": [str((u.get("Names") or ["?"])[0]).lstrip("/") for u in users[:3]]},
            ) from None
        facts: Facts = {"error": str(exc)}
        if archive is not None:
            facts["archive"] = str(archive)
        raise _Midway(facts) from None


def backup_before_removal(engine: Engine, name: str) -> Path:
    """Back up a named volume into the state directory, verify the archive, and prove that it restores the
    volume's current data (a scratch restore compared entry by entry with the live folder). Returns the
    archive; raises a TamerError when any of it fails (the volume then stays)."""
    from tamer.volumes.backup import backup_volume, verify_backup
    from tamer.volumes.guard import relation, volume_data_path
    from tamer.volumes.proof import prove_restorable

    state = state_dir()
    vol = engine.inspect_volume(name)
    for data in {volume_data_path(vol), str(vol.get("Mountpoint") or "")} - {""}:
        if relation(str(state), data) in ("the same folder", "inside it"):
            raise TamerError(
                f"tamer's state folder {state} (where the backup goes) is inside the folder of volume "
                f"{name} ({data}): removing the volume would delete its own backup; expected "
                "TAMER_STATE_DIR outside every volume; the volume stays"
            )
    folder = state / "backups"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    out = folder / backup_file_name(name, time.time())
    try:
        result = backup_volume(engine, name, out)
    except OSError as exc:
        raise TamerError(f"backing up volume {name} into {folder} failed ({exc}); the volume stays") from None
    try:
        verify_backup(result.path)
        live = str(engine.inspect_volume(name).get("Mountpoint") or "")
        if not live or not os.path.isdir(live):
            raise TamerError(
                f"the folder of volume {name} ({live or 'unknown'}) is not readable here, so tamer "
                "cannot prove that the backup restores it; expected a local engine run as root; the "
                "volume stays"
            )
        prove_restorable(Path(result.path), Path(live), scratch_dir=folder)
    except (TamerError, OSError) as exc:
        # an archive that is not proven is no backup: kept, one would pile up per run until the disk is full
        Path(result.path).unlink(missing_ok=True)
        raise TamerError(f"{exc} (that unproven archive was deleted; the volume stays)") from None
    return Path(result.path)


def backup_file_name(volume: str, at: float) -> str:
    """A file name for a backup of `volume` made at `at`: unique (two in one second never collide) and
    within the 255 bytes a file name may have, whatever the volume's name (up to 255 bytes itself)."""
    stamp = time.strftime("%Y%m%dT%H%M%S", time.gmtime(at))
    digest = hashlib.sha256(volume.encode()).hexdigest()[:8]
    return f"{volume[:120]}-{digest}-{stamp}-{secrets.token_hex(4)}.tar.zst"


def check_engine(engine: Engine, plan: Plan) -> None:
    """Refuse (WrongEngine) unless `engine` is the engine the plan was made on (its ID and data root:
    engines on one host share the ID)."""
    live = engine_identity(engine.info())
    if not plan.engine_id:
        raise WrongEngine(
            f"the plan records no engine ID, so tamer cannot tell which engine it was made for; "
            f"expected a plan made by this tamer; make a new one against {engine.where}; nothing "
            "was removed"
        )
    if live != plan.engine_id:
        raise WrongEngine(
            f"the plan was made on engine {plan.engine_id} ({plan.host}), but {engine.where} is "
            f"engine {live or 'with no ID'}; expected the same engine; make a new plan against the "
            "engine you mean (-H/--host); nothing was removed"
        )


def apply_plan(
    engine: Engine,
    plan: Plan,
    journal: Journal,
    *,
    read_current: Reader,
    resume_run: int | None = None,
    backup: Backup | None = None,
    progress: Callable[[int, int], None] | None = None,
    workers: int = REMOVAL_WORKERS,
    narrow_by: Policy | None = None,
) -> ApplyResult:
    """Execute `plan` (or finish the interrupted run `resume_run`, which holds its own plan).

    Parameters:
        read_current: reads the host as it is now (inventory, history, orphan clock) to re-derive the plan.
        backup: backs up and verifies a named volume, returning the archive; None: named volumes stay.
        workers: how many container steps may run at once (REMOVAL_WORKERS; 1: one step at a time).
        narrow_by: a policy the user names now (`--policy` beside a saved plan or an unfinished run): an
            action goes only if this policy, too, would remove it on the host as it is now.
    Raises WrongEngine before anything is done when the engine is not the plan's; OperationLocked when
    another tamer operation runs; EngineUnreachable (with how to resume) when the engine goes away; every
    step done before that is in the journal.
    """
    with operation_lock("clean --apply", engine=engine):
        if resume_run is not None:
            plan = _recorded_plan(journal, resume_run)
        try:
            check_engine(engine, plan)
        except WrongEngine as exc:
            if resume_run is None:
                raise
            # every `clean --apply` at this address would try to finish it again: say how to set it aside
            raise WrongEngine(
                f"{exc}; this was the unfinished clean run {resume_run}: `tamer clean --abandon` "
                "sets it aside (its pending steps never run)"
            ) from None
        allowed, refused_now = _rederive(engine, plan, read_current, backup is not None, narrow_by)
        # (an action in neither set names an object the host no longer has: it is gone, nothing to do)
        if resume_run is None:
            run_id = journal.start(plan, seal_plan(plan, plan_key())["mac"])
        else:
            run_id = resume_run
            journal.adopt(run_id)
        run = journal.get(run_id)
        with journal.held_open():
            _Steps(engine, plan, journal, run, allowed, refused_now, backup, progress).run_all(
                max(1, workers)
            )
        final = journal.get(run_id)
        partial = any(s.status in (StepStatus.SKIPPED, StepStatus.FAILED) for s in final.steps)
        journal.finish(run_id, "partial" if partial else "done")
        return ApplyResult(
            run_id=run_id,
            plan_id=final.plan_id,
            resumed=resume_run is not None,
            steps=tuple(
                StepResult(
                    s.idx,
                    s.kind,
                    s.object_id,
                    s.name,
                    s.bytes,
                    s.status,
                    s.code or "",
                    s.facts or {"detail": s.detail},
                )
                for s in final.steps
            ),
        )


class _Halt(Exception):
    """A step could not go on (the engine went away, the journal cannot be written): no new step starts."""

    def __init__(self, step: Step, error: EngineUnreachable | StateUnwritable) -> None:
        super().__init__(str(error))
        self.step = step
        self.error = error


class _Steps:
    """The pending steps of one run, executed in plan order, each re-checked live and journaled as it ends.

    Consecutive container steps run on a small thread pool (REMOVAL_WORKERS); any other step starts only
    once every step before it has ended, so the plan's order constraints hold: containers before the
    images and volumes they hold, and a volume's step sees every container of this run that released it.
    The journal is written by one thread at a time (Journal's lock, one connection, WAL), each step as it
    ends, as in a sequential run; a kill leaves at most `workers` removals done and not yet recorded,
    which a resume finds gone.
    """

    def __init__(
        self,
        engine: Engine,
        plan: Plan,
        journal: Journal,
        run: Run,
        allowed: set[tuple[str, str]],
        refused_now: dict[tuple[str, str], Facts],
        backup: Backup | None,
        progress: Callable[[int, int], None] | None,
    ) -> None:
        self.engine, self.plan, self.journal, self.run = engine, plan, journal, run
        self.allowed, self.refused_now, self.backup, self.progress = allowed, refused_now, backup, progress
        self.released: dict[str, str] = {}  # volume -> the container of this run whose removal orphaned it
        self.lock = threading.Lock()
        self.halted: _Halt | None = None
        self.ended = 0
        self.pending = run.pending

    def run_all(self, workers: int) -> None:
        """Run every pending step; raises EngineUnreachable / StateUnwritable (saying how to go on) when one
        could not, after the steps already running beside it have ended and been journaled."""
        try:
            batch: list[Step] = []
            for step in self.pending:
                if self.run.plan.actions[step.idx].kind == "container":
                    batch.append(step)
                    continue
                self._side_by_side(batch, workers)
                batch = []
                self._one(step)
                self._ended()
            self._side_by_side(batch, workers)
        except _Halt as halt:
            self._raise(halt)

    def _side_by_side(self, batch: list[Step], workers: int) -> None:
        if workers <= 1 or len(batch) <= 1:
            for step in batch:
                self._one(step)
                self._ended()
            return
        pool = ThreadPoolExecutor(max_workers=min(workers, len(batch)), thread_name_prefix="tamer-clean")
        try:
            futures = [pool.submit(self._guarded, step) for step in batch]
            for future in as_completed(futures):
                future.result()  # a bug in a step surfaces here
                self._ended()
        finally:
            # an error or ^C: steps not started stay pending; those running end and are journaled first
            pool.shutdown(wait=True, cancel_futures=True)
        if self.halted is not None:
            raise self.halted

    def _guarded(self, step: Step) -> None:
        if self.halted is not None:
            return  # another step halted the run: this one never starts, it stays pending
        try:
            self._one(step)
        except _Halt as halt:
            with self.lock:
                self.halted = self.halted or halt

    def _ended(self) -> None:
        self.ended += 1
        if self.progress:
            self.progress(self.ended, len(self.pending))

    def _one(self, step: Step) -> None:
        """Decide, re-check and execute one step, then journal how it ended."""
        faults.hit(f"clean.{step.idx}.before", idx=step.idx)
        action = self.run.plan.actions[step.idx]
        key = (action.kind, action.id)
        if key in self.allowed:
            if action.kind == "volume" and action.id in self.released:
                # its container went in this run: its orphan clock has only just started
                status, code, facts = (
                    StepStatus.SKIPPED,
                    Reason.VOLUME_USERS_GO_THIS_RUN,
                    {"users": [self.released[action.id]]},
                )
            else:
                try:
                    status, code, facts = _execute(
                        self.engine,
                        self.plan,
                        self.journal,
                        action,
                        self.backup,
                        self._release,
                        lambda: faults.hit(f"clean.{step.idx}.rechecked", idx=step.idx),
                    )
                except EngineUnreachable as exc:
                    raise _Halt(step, exc) from None
        elif key in self.refused_now:
            status, code, facts = StepStatus.SKIPPED, Reason.NOT_ELIGIBLE_NOW, self.refused_now[key]
        else:
            status, code, facts = StepStatus.GONE, Reason.ALREADY_GONE, {}
        faults.hit(f"clean.{step.idx}.after", idx=step.idx)  # removed, not yet journaled: the worst moment
        try:
            self.journal.mark(self.run.id, step.idx, status, code, facts)
        except StateUnwritable as exc:  # a full disk or a read-only state folder, mid-run
            raise _Halt(step, exc) from None

    def _release(self, volumes: list[str], container: str) -> None:
        with self.lock:
            self.released.update(dict.fromkeys(volumes, container))

    def _raise(self, halt: _Halt) -> None:
        where = f"the clean stopped at step {halt.step.idx + 1} of {len(self.run.steps)}"
        if isinstance(halt.error, EngineUnreachable):
            self.journal.finish(self.run.id, "interrupted")
            raise EngineUnreachable(
                f"{halt.error}\n{where}; every step that ended is recorded. Once the engine is back, run "
                "`tamer clean --apply` again: it shows the journal and finishes this run, re-checking each "
                "object."
            ) from halt.error
        raise StateUnwritable(
            f"{halt.error}\n{where} (perhaps done, not yet recorded); the steps that ended before it are "
            "recorded. Once the journal can be written, run `tamer clean --apply` again: it finishes this "
            "run, re-checking each object."
        ) from None


def _recorded_plan(journal: Journal, run_id: int) -> Plan:
    """The plan of an unfinished run, once its seal shows it is the plan this host recorded: the journal is
    a file like a saved plan, an input that can never widen what happens."""
    run = journal.get(run_id)
    try:
        return open_plan(
            {"format": FORMAT, "plan": run.plan_data, "mac": run.mac},
            plan_key(),
            f"the plan of unfinished clean run {run_id} in {journal.path}",
        )
    except PlanRefused as exc:
        raise PlanRefused(
            f"{exc}; `tamer clean --abandon` sets that run aside (its pending steps never run)"
        ) from None


def _rederive(
    engine: Engine, plan: Plan, read_current: Reader, backup_available: bool, narrow_by: Policy | None = None
) -> tuple[set[tuple[str, str]], dict[tuple[str, str], Facts]]:
    """What the plan's own policy removes on the host as it is now (and why it keeps the rest); with
    `narrow_by`, only what that policy removes too (a policy named now is never overridden by an older
    plan's: a rule added since, to keep something, holds for the run it finishes)."""
    current = read_current(engine)
    policies = [policy_from_json(plan.rules)]
    if narrow_by is not None and _canonical(policy_to_json(narrow_by)) != _canonical(plan.rules):
        policies.append(narrow_by)
    allowed: set[tuple[str, str]] | None = None
    refused: dict[tuple[str, str], Facts] = {}
    for policy in policies:
        fresh = make_plan(
            current.inventory,
            policy,
            history=current.history or None,
            orphan_clock=current.orphan_clock,
            backup_available=backup_available,
        )
        these = {(a.kind, a.id) for a in fresh.actions}
        allowed = these if allowed is None else allowed & these
        for r in fresh.refusals:
            refused.setdefault((r.kind, r.id), {"now_code": r.code.value, "now_facts": r.facts})
    assert allowed is not None
    return allowed, {key: facts for key, facts in refused.items() if key not in allowed}


def _canonical(rules: Mapping[str, Any]) -> str:
    return json.dumps(rules, sort_keys=True, default=str)


def _remove_image(engine: Engine, image_id: str, tags: list[str]) -> None:
    """Remove image `image_id` and only it. The engine deletes by name whatever image holds that name at
    that moment: a tag moved to another image since the re-check (`docker tag`, a build, a pull) untagged
    that image instead, and deleted it when the tag was its only name. So every tag but one goes only once
    it is seen on this image, and the image itself goes by its id (with its last tag)."""
    untagged = False
    for ref in tags[1:]:
        try:
            now = str(engine.inspect_image(ref).get("Id") or "")
        except ObjectNotFound:
            continue  # untagged meanwhile: one name fewer to remove, the image is still there
        if now != image_id:
            raise Keep(Reason.TAGS_CHANGED, {"tag": ref, "now_on": now})
        engine.remove_image(ref)
        untagged = True
    try:
        engine.remove_image(image_id)
    except ObjectNotFound:
        if not untagged:
            raise
        # the tag it lost meanwhile was its last other name: the engine deleted it with the tag we removed


def _execute(
    engine: Engine,
    plan: Plan,
    journal: Journal,
    action: Action,
    backup: Backup | None,
    release: Callable[[list[str], str], None],
    rechecked: Callable[[], None] = lambda: None,
) -> tuple[StepStatus, Reason, Facts]:
    """Re-check one object against the live engine, then remove it (noting the volumes a container held).
    `rechecked()` is called between the last re-check and the removal (the fault seam's point)."""
    try:
        if action.kind == "container":
            volumes = recheck_container(engine, action)
            release(volumes, action.name)
            # its volumes become orphaned now: their clock starts now, never at their creation
            journal.volumes_used(plan.engine_id or plan.host, volumes, time.time())
            # The inspect above is the check for what the engine does not enforce: that the container has
            # not run since the plan, and which volumes it releases (their clock, recorded before it goes).
            # "Never a running container" the engine enforces itself, at this DELETE (no force): a
            # container started between the inspect and here is refused (409) and kept, ENGINE_REFUSED.
            rechecked()
            engine.remove_container(action.id)  # never with its volumes
            return StepStatus.DONE, Reason.REMOVED, {}
        if action.kind == "volume":
            named = recheck_volume(engine, action)
            if named:
                if backup is None:
                    return StepStatus.SKIPPED, Reason.NO_BACKUP_SUPPORT, {}
                try:
                    path = backup(engine, action.id)
                except (TamerError, OSError) as exc:
                    return StepStatus.SKIPPED, Reason.BACKUP_FAILED, {"error": str(exc)}
                recheck_volume(engine, action)  # nobody started using it while it was backed up
                rechecked()
                _remove_volume(engine, action.id, path)
                return StepStatus.DONE, Reason.BACKED_UP_REMOVED, {"archive": str(path)}
            rechecked()
            _remove_volume(engine, action.id, None)
            return StepStatus.DONE, Reason.REMOVED, {}
        if action.kind == "image":
            tags = recheck_image(engine, action)
            rechecked()
            _remove_image(engine, action.id, tags)
            return StepStatus.DONE, Reason.REMOVED, {}
        if action.kind == "build-cache":
            rechecked()
            engine.remove_build_cache(action.id)
            return StepStatus.DONE, Reason.REMOVED, {}
        return StepStatus.FAILED, Reason.UNKNOWN_KIND, {"kind": action.kind}
    except ObjectNotFound:
        return StepStatus.GONE, Reason.ALREADY_GONE, {}
    except Keep as keep:
        return StepStatus.SKIPPED, keep.code, keep.facts
    except _Midway as midway:
        return StepStatus.FAILED, Reason.REMOVAL_FAILED_MIDWAY, midway.facts
    except EngineUnreachable:
        raise
    except TamerError as exc:
        return StepStatus.SKIPPED, Reason.ENGINE_REFUSED, {"error": str(exc)}
