"""The one operation core: every command that changes the host (clean, move, adopt, backup, restore) runs here.

An operation is a value with a journal, modelled on pip's uninstall
(`req_uninstall.py`: a removal is stashed, then committed or rolled back):

    op = MyOperation.begin(key, data)      # or .load(key) to resume / roll back a killed one
    with operation_lock("volume move mv_vol"):
        op.stash()                         # do every pending step, each recorded in the journal
        op.commit()                        # the irreversible part (if any); the journal goes away
    # on failure: op.rollback() undoes the done steps in reverse, from the journal

Pieces:
- one state dir: `tamer.state.state_dir()`; journals live in `<state>/operations/<kind>/<key>.json`
  (written atomically: write, fsync, rename), the lock is `<state>/operation.lock`.
- one exclusive lock: `operation_lock(command)`, fcntl on the lock file, re-entrant inside one process
  (clean may call backup), held until the block ends; a second process gets `OperationLocked` naming the
  holder's pid and command ("another tamer operation (pid 4242, `tamer volume move a`) holds the lock").
- typed steps: `StepStatus` (PENDING, RUNNING, DONE, FAILED, ROLLED_BACK, SKIPPED). A step found RUNNING
  after a kill was interrupted midway: each step's `do_` is idempotent (it re-reads the live system), so
  resuming repeats it; its `undo_` handles both a done and a half-done step.
- faults: `faults` (a `FaultPoints`) is the seam tests use to stop the process at an exact point. Production
  code calls `faults.hit("move.copy.before")`; nothing happens unless a test installed a handler in-process
  (`faults.install(...)`) or ran the CLI through tests/faulty_tamer.py, which installs one and then calls
  `tamer.cli.main`. No environment variable is read here.

How the other commands plug in:
- clean (apply.py, T3): a clean run is an `Operation` whose steps are the plan's actions (one step per
  removal, `step_names()` overridden to return them); it takes `operation_lock("clean --apply")` and calls
  `faults.hit(f"clean.{idx}.after")` after each removal, so kills land between "removed" and "journaled".
  Its SQLite journal may stay as its history; the lock and the fault seam are these.
- backup/restore (volumes/backup.py, T2): take `operation_lock(...)` around the write; restore is an
  Operation with steps (create-volume, extract, verify) whose rollback removes what it created, and both
  call `faults.hit("backup.<phase>")` / `faults.hit("restore.<phase>")` at their phase boundaries.
- move and adopt (volumes/move.py, volumes/adopt.py) are Operations (see there).
"""

from __future__ import annotations

import contextlib
import enum
import fcntl
import hashlib
import json
import os
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, ClassVar

from tamer.errors import TamerError, UsageError
from tamer.state import state_dir, why_unwritable

JSON = dict[str, Any]


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    RUNNING = "running"  # started, not known to have finished (a kill happened in it)
    DONE = "done"
    FAILED = "failed"
    ROLLED_BACK = "rolled_back"
    SKIPPED = "skipped"


class OperationState(enum.StrEnum):
    ACTIVE = "active"  # stashing: steps going forward
    ROLLING_BACK = "rolling_back"
    COMMITTING = "committing"


class OperationLocked(TamerError):
    """Another tamer process holds the operation lock."""


class JournalUnwritable(TamerError):
    """An operation's journal (or the lock file) cannot be written: a full disk, a read-only filesystem,
    no permission. The journal on disk still holds the last step recorded."""


def _why_unwritable(folder: Path, exc: OSError) -> str:
    """state.why_unwritable as a clause of an error message ("" when nothing stands out)."""
    why = why_unwritable(folder, exc)
    return f"; {why}" if why else ""


# -- faults: the seam tests use ---------------------------------------------------
FaultHandler = Callable[[str, dict[str, Any]], None]


class FaultPoints:
    """Named points where a test may stop the process (or do anything else) at an exact step.

    Production code calls `hit(point, **context)`; with no handler installed it does nothing.
    Example (a test): `faults.install(lambda p, ctx: os._exit(137) if p == "move.copy.after" else None)`.
    """

    def __init__(self) -> None:
        self._handlers: list[FaultHandler] = []
        self.seen: list[str] = []  # every point hit while a handler is installed (the campaign samples it)

    def install(self, handler: FaultHandler) -> None:
        self._handlers.append(handler)

    def clear(self) -> None:
        self._handlers.clear()
        self.seen.clear()

    def hit(self, point: str, **context: Any) -> None:
        if not self._handlers:
            return
        self.seen.append(point)
        for handler in list(self._handlers):
            handler(point, context)


faults = FaultPoints()


# -- one lock -----------------------------------------------------------------------
class _LockState:
    def __init__(self) -> None:
        self.fh: IO[str] | None = None
        self.depth = 0


_lock = _LockState()


def lock_path() -> Path:
    return state_dir() / "operation.lock"


def engine_lock_path(engine_key: str) -> Path:
    """The host-wide lock file of one engine, shared by every user and state folder on this host.

    `sudo tamer` and `sudo -E tamer` (or two TAMER_STATE_DIRs) have different state folders but change
    the same engine: one change at a time must hold per engine, so this lock lives outside any state
    folder, in /run/lock (world-writable, sticky) or else the temp folder, named by the engine's identity.
    """
    base = Path("/run/lock")
    if not (base.is_dir() and os.access(base, os.W_OK | os.X_OK)):
        base = Path(tempfile.gettempdir())
    digest = hashlib.sha256(engine_key.encode()).hexdigest()[:20]
    return base / f"tamer-engine-{digest}.lock"


def _flock_engine(engine_key: str, command: str, deadline: float) -> int:
    path = engine_lock_path(engine_key)
    try:
        # read-only is enough for flock, so a file another user created still locks
        fd = os.open(path, os.O_RDONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OperationLocked(
            f"cannot open the engine's lock file {path}: {exc.strerror}; expected a regular "
            "file any user can read; remove it if it is something else, then run this "
            "again"
        ) from None
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return fd
        except BlockingIOError:
            if time.monotonic() >= deadline:
                os.close(fd)
                raise OperationLocked(
                    f"another tamer operation holds the lock of this engine ({path}), possibly run with another "
                    f"state folder (another user, sudo without -E); expected one change at a time on an engine; "
                    f"wait for it to finish, then run `tamer {command}` again"
                ) from None
            time.sleep(0.1)


LOCK_GRACE_S = 0.3
"""The least an operation waits for the state folder's lock: a `tamer clean` preview probes it for an
instant (lock_held_elsewhere), which must never make an operation starting then give up."""


@contextlib.contextmanager
def operation_lock(command: str, *, wait: float = 0.0, engine: Any = None) -> Iterator[None]:
    """Hold tamer's one exclusive lock for the block (re-entrant in this process).

    Two locks, taken in this order: the state folder's (it names its holder) and, when `engine` (a
    tamer.engine client) is given, that engine's host-wide one (`engine_lock_path`, keyed by
    `inventory.engine_identity`), so two state folders never change one engine at once.

    wait: seconds to wait for another holder before giving up (0: fail at once).
    Raises OperationLocked naming the holder's pid and command.
    """
    if _lock.depth:
        _lock.depth += 1
        try:
            yield
        finally:
            _lock.depth -= 1
        return
    path = lock_path()
    try:
        fh = open(path, "a+")  # noqa: SIM115 - held until the block ends
    except OSError as exc:
        raise JournalUnwritable(
            f"tamer's lock file {path} cannot be opened ({exc.strerror or exc}{_why_unwritable(path.parent, exc)}); "
            "expected a state folder this user can write, with free space; make room there or fix the folder "
            "(or point TAMER_STATE_DIR at another one), then run this again; nothing was changed"
        ) from None
    deadline = time.monotonic() + max(wait, LOCK_GRACE_S)
    while True:
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() >= deadline:
                fh.seek(0)
                holder = fh.read().strip() or "unknown"
                fh.close()
                raise OperationLocked(
                    f"another tamer operation ({holder}) holds the lock {path}; expected one change at a time on "
                    "this host; wait for it to finish (or stop that process), then run this again"
                ) from None
            time.sleep(0.1)
    engine_fd = -1
    if engine is not None:
        try:
            from tamer.inventory import engine_identity

            engine_fd = _flock_engine(engine_identity(engine.info()) or "unknown", command, deadline)
        except BaseException:
            fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()
            raise
    # the holder's name only helps the message of a process that finds the lock taken: a full or read-only
    # state disk must not stop a command that needs no journal (a backup) or fail one before it starts
    # (written past the file object's buffer: a write the disk refused must not come back at close)
    with contextlib.suppress(OSError):
        fh.seek(0)
        fh.truncate()
        os.write(fh.fileno(), f"pid {os.getpid()}, command `tamer {command}`".encode())
    _lock.fh, _lock.depth = fh, 1
    try:
        yield
    finally:
        _lock.depth = 0
        _lock.fh = None
        with contextlib.suppress(OSError):
            fh.seek(0)
            fh.truncate()
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()
        if engine_fd >= 0:
            os.close(engine_fd)  # closing the descriptor releases its flock


def lock_held() -> bool:
    return _lock.depth > 0


def lock_held_elsewhere() -> bool | None:
    """Whether another process holds this state folder's operation lock right now; None when that cannot
    be told (the lock file cannot be opened). A probe: a shared lock taken and dropped at once, never
    waited for (operation_lock gives a holder's release LOCK_GRACE_S, so a probe at the moment another
    process locks costs it nothing)."""
    if _lock.depth:
        return False  # this process holds it
    try:
        fd = os.open(lock_path(), os.O_RDONLY | os.O_CLOEXEC | os.O_NOFOLLOW)
    except FileNotFoundError:
        return False  # never created: no operation ever held it
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    except OSError:
        return None
    finally:
        os.close(fd)  # (closing drops the probe's lock, if it got it)
    return False


# -- the journal of one operation -------------------------------------------------------
def journal_path(kind: str, key: str) -> Path:
    safe = "".join(c if c.isalnum() or c in "._-" else "_" for c in key)[:80]
    digest = hashlib.sha256(key.encode()).hexdigest()[:10]
    return state_dir() / "operations" / kind / f"{safe}-{digest}.json"


class Operation:
    """A multi-step change with a journal: stash (forward), commit, rollback.

    Subclasses set `kind` and `steps`, and define `do_<step>` (idempotent: it re-reads the live system)
    and optionally `undo_<step>` (handles a done or half-done step). `data` is the journal's payload
    (JSON), saved with `save()`; step statuses live beside it.
    """

    kind: ClassVar[str] = "operation"
    steps: ClassVar[tuple[str, ...]] = ()

    def __init__(self, path: Path, record: JSON) -> None:
        self.path = path
        self.record = record

    # -- journal ------------------------------------------------------------------
    @property
    def data(self) -> JSON:
        return self.record["data"]  # type: ignore[no-any-return]

    @property
    def key(self) -> str:
        return str(self.record["key"])

    def step_names(self) -> tuple[str, ...]:
        return tuple(self.record["order"])

    @classmethod
    def load(cls, key: str) -> Any:
        """The unfinished operation of this kind on `key`, or None."""
        path = journal_path(cls.kind, key)
        try:
            record = json.loads(path.read_text())
        except FileNotFoundError:
            return None
        except (OSError, ValueError) as exc:
            raise TamerError(
                f"the journal {path} of an unfinished {cls.kind} cannot be read ({exc}); expected a "
                "JSON file written by tamer; move it aside to start over (check the data by hand "
                "first)"
            ) from exc
        return cls(path, record)

    @classmethod
    def begin(cls, key: str, data: JSON, order: tuple[str, ...] | None = None) -> Any:
        path = journal_path(cls.kind, key)
        if path.exists():
            raise UsageError(
                f"an unfinished {cls.kind} of {key} is recorded in {path}; expected none; finish it "
                "(rerun) or roll it back first"
            )
        names = order if order is not None else cls.steps
        record: JSON = {
            "kind": cls.kind,
            "key": key,
            "state": OperationState.ACTIVE.value,
            "pid": os.getpid(),
            "started": time.time(),
            "order": list(names),
            "status": {s: StepStatus.PENDING.value for s in names},
            "data": data,
        }
        op = cls(path, record)
        op.save()
        return op

    def save(self) -> None:
        """Write the journal atomically (write, fsync, rename). Raises JournalUnwritable when the state folder
        takes no write; the journal on disk is then the one saved last (a resume or a rollback reads it)."""
        tmp = self.path.with_name(self.path.name + ".tmp")
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            with open(tmp, "w") as f:
                json.dump(self.record, f, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                tmp.unlink()
            then = (
                "then rerun this command to finish it, or roll it back (--rollback --apply): the journal there "
                "still holds the last step it recorded"
                if self.path.exists()
                else f"then run this again; nothing was changed by this {self.kind}"
            )
            raise JournalUnwritable(
                f"the journal {self.path} of this {self.kind} cannot be written "
                f"({exc.strerror or exc}{_why_unwritable(self.path.parent, exc)}); expected a state folder this "
                f"user can write, with free space; make room there or fix the folder, {then}"
            ) from None
        with contextlib.suppress(OSError):
            dfd = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)

    def status(self, step: str) -> StepStatus:
        return StepStatus(self.record["status"][step])

    def mark(self, step: str, status: StepStatus) -> None:
        self.record["status"][step] = status.value
        self.save()

    def is_done(self, step: str) -> bool:
        return self.status(step) is StepStatus.DONE

    def started_steps(self) -> list[str]:
        """Steps that did something (done, or running when killed), in order."""
        return [
            s
            for s in self.step_names()
            if self.status(s) in (StepStatus.DONE, StepStatus.RUNNING, StepStatus.FAILED)
        ]

    def pending_steps(self) -> list[str]:
        return [s for s in self.step_names() if self.status(s) is not StepStatus.DONE]

    @property
    def state(self) -> OperationState:
        return OperationState(self.record["state"])

    def set_state(self, state: OperationState) -> None:
        self.record["state"] = state.value
        self.save()

    # -- stash / commit / rollback -----------------------------------------------------------
    def run_step(self, step: str) -> None:
        getattr(self, "do_" + step.replace("-", "_"))()

    def undo_step(self, step: str) -> None:
        undo = getattr(self, "undo_" + step.replace("-", "_"), None)
        if undo is not None:
            undo()

    def stash(self) -> None:
        """Do every step not done yet, in order, journaling each. Raises what a step raised (the failed
        step is marked FAILED; nothing is undone here: call rollback())."""
        if self.state is OperationState.ROLLING_BACK:
            raise UsageError(
                f"a rollback of this {self.kind} of {self.key} was started and did not finish; "
                "expected it to be finished first; rerun with --rollback"
            )
        for step in self.step_names():
            if self.is_done(step):
                continue
            faults.hit(f"{self.kind}.{step}.before", op=self)
            self.mark(step, StepStatus.RUNNING)
            try:
                self.run_step(step)
            except BaseException:
                self.mark(step, StepStatus.FAILED)
                raise
            faults.hit(f"{self.kind}.{step}.mid", op=self)  # done, not yet journaled: the worst moment
            self.mark(step, StepStatus.DONE)
            faults.hit(f"{self.kind}.{step}.after", op=self)

    def finish(self) -> None:
        """The irreversible last part of a successful operation (e.g. purging the source); default none."""

    def commit(self) -> None:
        """Finish and forget: the operation can no longer be rolled back."""
        self.set_state(OperationState.COMMITTING)
        faults.hit(f"{self.kind}.commit.before", op=self)
        self.finish()
        self.remove()

    def rollback(self) -> list[str]:
        """Undo every started step in reverse order; returns what was done. Idempotent: a rollback killed
        midway is finished by calling it again (the journal says which undos already ran)."""
        self.set_state(OperationState.ROLLING_BACK)
        did: list[str] = []
        for step in reversed(self.started_steps()):
            faults.hit(f"{self.kind}.undo-{step}.before", op=self)
            self.undo_step(step)
            self.mark(step, StepStatus.ROLLED_BACK)
            did.append(step)
        self.after_rollback()
        self.remove()
        return did

    def after_rollback(self) -> None:
        """Hook: re-establish what every undo relies on (e.g. start the users again)."""

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()


def unfinished(kind: str) -> list[JSON]:
    """The journals of unfinished operations of `kind` (for `status`-like listings)."""
    folder = state_dir() / "operations" / kind
    out: list[JSON] = []
    if folder.is_dir():
        for p in sorted(folder.glob("*.json")):
            with contextlib.suppress(OSError, ValueError):
                out.append(json.loads(p.read_text()))
    return out


__all__ = [
    "FaultPoints",
    "JournalUnwritable",
    "Operation",
    "OperationLocked",
    "OperationState",
    "StepStatus",
    "faults",
    "journal_path",
    "lock_held",
    "lock_held_elsewhere",
    "operation_lock",
    "unfinished",
]
