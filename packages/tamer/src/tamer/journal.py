"""The clean journal: every step of every `clean --apply`, in SQLite, so an
interrupted clean can be shown and resumed; and the orphan clock of volumes.

A run is written with all its steps "pending" before anything is removed;
each step is marked as it ends (done, gone, skipped, failed) with its reason
code and facts. A run still marked "running" whose process is gone was
interrupted: the next `clean --apply` shows it and finishes it (re-checking
every step). One clean at a time: the lock is tamer.operation's one lock.

The orphan clock: when tamer last saw each volume used (a container mounting
it, in any state; its containers removed by a clean), or, when it never saw
it used, when it first saw it orphaned. Orphaned volumes age from there,
never from their creation time.
"""

from __future__ import annotations

import enum
import json
import os
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing, contextmanager, suppress
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tamer.errors import TamerError
from tamer.inventory import Inventory
from tamer.reasons import Reason
from tamer.state import state_dir, why_unwritable

if TYPE_CHECKING:
    from tamer.plan import Plan  # imported where a run is read back: `tamer df` only keeps the orphan clock

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, plan_id TEXT NOT NULL, plan TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, status TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL, idx INTEGER NOT NULL, kind TEXT NOT NULL, object_id TEXT NOT NULL,
    name TEXT NOT NULL, bytes INTEGER NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
    at REAL, PRIMARY KEY (run_id, idx));
CREATE TABLE IF NOT EXISTS volume_clock (
    engine TEXT NOT NULL, name TEXT NOT NULL, created TEXT NOT NULL, last_used REAL NOT NULL,
    PRIMARY KEY (engine, name));
"""
# columns added after the first release of the journal (older files get them on open)
RUN_MIGRATIONS = ("ALTER TABLE runs ADD COLUMN mac TEXT NOT NULL DEFAULT ''",)
MIGRATIONS = (
    "ALTER TABLE steps ADD COLUMN code TEXT NOT NULL DEFAULT ''",
    "ALTER TABLE steps ADD COLUMN facts TEXT NOT NULL DEFAULT '{}'",
)


class StepStatus(enum.StrEnum):
    PENDING = "pending"
    DONE = "done"
    GONE = "gone"  # already removed (by someone else, or by us just before a kill)
    SKIPPED = "skipped"  # kept on purpose: changed since the plan, in use, no backup...
    FAILED = "failed"


FINAL_STEP = (StepStatus.DONE, StepStatus.GONE, StepStatus.SKIPPED, StepStatus.FAILED)


@dataclass(frozen=True)
class Step:
    """One step of a clean run as journaled: what it removes and how it ended."""

    idx: int
    kind: str
    object_id: str
    name: str
    bytes: int
    status: StepStatus
    detail: str  # prose written by tamer before reason codes; empty for newer steps
    code: str = ""  # a tamer.reasons.Reason value
    facts: dict[str, Any] | None = None


class StateUnreadable(TamerError):
    """The journal database is damaged or unreadable."""


class StateUnwritable(StateUnreadable):
    """The journal is fine but cannot be written: a full disk, a read-only filesystem, no permission."""


class UnreadableRun(TamerError):
    """A journal run whose recorded plan this version cannot read."""


@dataclass(frozen=True)
class Run:
    """One `clean --apply` run as journaled: its plan, its steps and how it ended."""

    id: int
    host: str
    plan_id: str
    plan: Plan
    started: float
    finished: float | None
    status: str  # running, done, partial, interrupted
    steps: tuple[Step, ...]
    pid: int = 0  # the process that ran it last
    mac: str = ""  # the seal of its plan (tamer.sealing), checked before a resume runs it
    plan_data: Any = None  # the plan exactly as recorded (what the seal covers)

    @property
    def pending(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.status == "pending")

    @property
    def in_progress(self) -> bool:
        """Marked running, its process is alive and tamer's operation lock is held: it is going on right now.

        The pid alone is not enough: after a kill -9 the kernel gives that pid to another process sooner
        or later, which would make a dead run look alive for as long as that process lives (every preview
        saying "running right now", --abandon refused). A clean holds the lock for as long as it runs."""
        if self.status != "running" or self.pid <= 0 or self.pid == os.getpid():
            return False
        try:
            os.kill(self.pid, 0)
        except ProcessLookupError:
            return False
        except PermissionError:
            pass
        from tamer.operation import lock_held_elsewhere

        held = lock_held_elsewhere()
        return True if held is None else held


class Journal:
    """The journal file. Safe to share between threads: one transaction at a time (a lock), on a connection
    of its own, or on the one connection `held_open` keeps for a clean's many small writes."""

    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "journal.sqlite"
        self._lock = threading.RLock()
        self._held: sqlite3.Connection | None = None
        with self._tx() as db:
            db.executescript(SCHEMA)
            for table, migrations in (("steps", MIGRATIONS), ("runs", RUN_MIGRATIONS)):
                columns = {row[1] for row in db.execute(f"PRAGMA table_info({table})")}
                for statement in migrations:
                    if statement.split()[5] not in columns:
                        db.execute(statement)

    @contextmanager
    def held_open(self) -> Iterator[None]:
        """Keep one connection open for the block, shared by every thread (under the lock). A clean writes
        a step at a time, from several threads; a connection per write costs a WAL checkpoint at each close.
        Each write is still its own transaction, on disk (synchronous=FULL) before the writer goes on."""
        with self._lock:
            outer = self._held is None
            if outer:
                try:
                    self._held = self._db(check_same_thread=False)
                except sqlite3.Error as exc:
                    raise self._unusable(exc) from None
        if not outer:  # already held: the outer block closes it
            yield
            return
        try:
            yield
        finally:
            with self._lock:
                held, self._held = self._held, None
                if held is not None:
                    with suppress(sqlite3.Error):
                        held.close()

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        """One transaction; an SQLite error becomes a TamerError that says why and what to do."""
        with self._lock:
            try:
                if self._held is not None:
                    with self._held as db:  # commits, or rolls back on an error
                        yield db
                else:
                    with closing(self._db()) as db, db:
                        yield db
            except sqlite3.Error as exc:
                raise self._unusable(exc) from None

    def _unusable(self, exc: sqlite3.Error) -> StateUnreadable:
        why = why_unwritable(self.path.parent, exc)
        if why is not None:
            # the file is fine: "move it aside" would throw away the orphan clock and any unfinished run
            return StateUnwritable(
                f"the clean journal {self.path} cannot be written: {why} ({exc}); the "
                "journal is not damaged, keep it (it holds the orphan clock and any "
                "unfinished clean); make room or fix that folder, or set TAMER_STATE_DIR to "
                "a writable folder on a disk with space, and run this again"
            )
        return StateUnreadable(
            f"the clean journal {self.path} cannot be used ({exc}); expected an SQLite "
            "database written by tamer; move it aside (a new one is made) and run this "
            "again: nothing was changed"
        )

    def _db(self, *, check_same_thread: bool = True) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30, check_same_thread=check_same_thread)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a step marked done must survive a crash right after
        return db

    # -- runs ------------------------------------------------------------------
    def start(self, plan: Plan, mac: str = "") -> int:
        """Record a new run of `plan` (sealed by `mac`, see tamer.sealing), all its steps pending."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO runs (host, plan_id, plan, started, status, pid, mac) VALUES (?,?,?,?,?,?,?)",
                (
                    plan.host,
                    plan.plan_id,
                    json.dumps(plan.to_json()),
                    time.time(),
                    "running",
                    os.getpid(),
                    mac,
                ),
            )
            run_id = int(cur.lastrowid or 0)
            db.executemany(
                "INSERT INTO steps (run_id, idx, kind, object_id, name, bytes, status) "
                "VALUES (?,?,?,?,?,?,'pending')",
                [(run_id, i, a.kind, a.id, a.name, a.bytes) for i, a in enumerate(plan.actions)],
            )
        return run_id

    def mark(self, run_id: int, idx: int, status: StepStatus, code: Reason, facts: dict[str, Any]) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE steps SET status = ?, code = ?, facts = ?, at = ? WHERE run_id = ? AND idx = ?",
                (status.value, code.value, json.dumps(facts), time.time(), run_id, idx),
            )

    def finish(self, run_id: int, status: str) -> None:
        with self._tx() as db:
            db.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, time.time(), run_id))

    def adopt(self, run_id: int) -> None:
        """This process takes over an interrupted run."""
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'running', pid = ?, finished = NULL WHERE id = ?",
                (os.getpid(), run_id),
            )

    def get(self, run_id: int) -> Run:
        with self._tx() as db:
            row = db.execute(
                "SELECT id, host, plan_id, plan, started, finished, status, pid, mac FROM runs WHERE id = ?",
                (run_id,),
            ).fetchone()
            if row is None:
                raise TamerError(f"no clean run {run_id} in the journal {self.path}")
            steps = db.execute(
                "SELECT idx, kind, object_id, name, bytes, status, detail, code, facts FROM steps "
                "WHERE run_id = ? ORDER BY idx",
                (run_id,),
            ).fetchall()
        from tamer.plan import Plan

        try:
            plan_data = json.loads(row[3])
            plan = Plan.from_json(plan_data)
        except (KeyError, TypeError, ValueError) as exc:
            raise UnreadableRun(
                f"journal run {run_id} in {self.path} holds a plan this tamer cannot read "
                f"({type(exc).__name__}: {exc}); it was written by an older tamer"
            ) from None
        return Run(
            id=row[0],
            host=row[1],
            plan_id=row[2],
            plan=plan,
            started=row[4],
            finished=row[5],
            status=row[6],
            pid=int(row[7] or 0),
            mac=str(row[8] or ""),
            plan_data=plan_data,
            steps=tuple(
                Step(s[0], s[1], s[2], s[3], s[4], StepStatus(s[5]), s[6], s[7], json.loads(s[8] or "{}"))
                for s in steps
            ),
        )

    def unfinished(self, host: str) -> Run | None:
        """The latest run against `host` that did not end (killed, engine gone), if any.

        A run an older tamer left unfinished, in a format this one cannot read, is marked abandoned:
        nothing of it runs (every object it named is still judged afresh by the next plan).
        """
        with self._tx() as db:
            row = db.execute(
                "SELECT id FROM runs WHERE host = ? AND status IN ('running', 'interrupted') "
                "ORDER BY id DESC LIMIT 1",
                (host,),
            ).fetchone()
        if not row:
            return None
        try:
            return self.get(int(row[0]))
        except UnreadableRun:
            self.abandon(int(row[0]))
            return None

    def abandon(self, run_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE runs SET status = 'abandoned', finished = ? WHERE id = ?", (time.time(), run_id)
            )
            db.execute(
                "UPDATE steps SET status = 'skipped', code = ?, facts = '{}' "
                "WHERE run_id = ? AND status = 'pending'",
                (Reason.ABANDONED.value, run_id),
            )

    # -- the orphan clock -----------------------------------------------------------
    def observe_volumes(self, inv: Inventory) -> dict[str, datetime]:
        """Update and return the orphan clock of every volume in `inv` (name -> last seen used).

        A volume any container mounts (running or not) was used now; an orphaned volume tamer has no
        time for is first seen orphaned now; a volume re-created under an old name starts afresh; a time
        in the future (the system clock went back) becomes now, unless now is earlier than the volume's
        creation: then this clock is the wrong one and nothing is recorded for that volume (a run must
        never make a volume older than it is). Rows of volumes that no longer exist are dropped.
        """
        engine = inv.engine_id or inv.host
        now = inv.taken_at.timestamp()
        with self._tx() as db:
            known = {
                name: (created, at)
                for name, created, at in db.execute(
                    "SELECT name, created, last_used FROM volume_clock WHERE engine = ?", (engine,)
                )
            }
            rows: list[tuple[str, str, str, float]] = []
            for v in inv.volumes:
                created = v.created.isoformat() if v.created else ""
                old = known.get(v.name)
                if v.created is not None and now < v.created.timestamp():
                    # this clock reads earlier than the volume's creation (a host at 1970 before NTP, a VM
                    # resumed from an old snapshot): a time read now would make the volume look years old
                    # to the next run at the right time. Record nothing; with no row it counts as just
                    # found orphaned, and an existing row keeps its (later) time.
                    continue
                if not v.orphaned or old is None or old[0] != created:
                    rows.append((engine, v.name, created, now))
                elif old[1] > now:
                    # the clock went back (it had run ahead): restart from now, or the volume would wait for a
                    # date that may be years away
                    db.execute(
                        "UPDATE volume_clock SET last_used = ? WHERE engine = ? AND name = ?",
                        (now, engine, v.name),
                    )
            db.executemany(
                "INSERT INTO volume_clock (engine, name, created, last_used) VALUES (?,?,?,?) "
                "ON CONFLICT (engine, name) DO UPDATE SET created = excluded.created, last_used = "
                "CASE WHEN volume_clock.created = excluded.created "
                "THEN max(volume_clock.last_used, excluded.last_used) ELSE excluded.last_used END",
                rows,
            )
            gone = set(known) - {v.name for v in inv.volumes}
            db.executemany(
                "DELETE FROM volume_clock WHERE engine = ? AND name = ?", [(engine, n) for n in gone]
            )
            clock = dict(db.execute("SELECT name, last_used FROM volume_clock WHERE engine = ?", (engine,)))
        return {name: datetime.fromtimestamp(at, tz=UTC) for name, at in clock.items()}

    def volumes_used(self, engine: str, names: list[str], at: float) -> None:
        """Restart the clock of these volumes: their container is being removed now. (A volume with no row
        gets one with an unknown creation time, which the next look replaces by its own, later, time.)"""
        if not names:
            return  # nothing to record: no transaction (a clean calls this before each container it removes)
        with self._tx() as db:
            db.executemany(
                "INSERT INTO volume_clock (engine, name, created, last_used) VALUES (?, ?, '', ?) "
                "ON CONFLICT (engine, name) DO UPDATE SET last_used = max(last_used, excluded.last_used)",
                [(engine, n, at) for n in names],
            )

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        with self._tx() as db:
            rows = db.execute(
                "SELECT id, host, plan_id, started, finished, status FROM runs ORDER BY id DESC LIMIT ?",
                (limit,),
            ).fetchall()
        return [
            dict(zip(("id", "host", "plan_id", "started", "finished", "status"), r, strict=True))
            for r in rows
        ]


def observe_orphan_clock(inv: Inventory, path: Path | None = None) -> tuple[dict[str, datetime], str | None]:
    """Journal(path).observe_volumes(inv), never failing: a damaged or unreadable state database must not
    block a command that only reads or plans. Returns (clock, None), or ({}, why) when it could not be
    used; with no clock every orphaned volume counts as just found orphaned, so nothing goes early."""
    try:
        return Journal(path).observe_volumes(inv), None
    except (sqlite3.Error, OSError, TamerError) as exc:
        return {}, (
            f"the orphan clock could not be read or recorded ({exc}); orphaned volumes are judged as "
            "just found orphaned, so none goes in this run"
        )
