"""The clean journal: every step of every `clean --apply`, in SQLite, so an
interrupted clean can be shown and resumed.

A run is written with all its steps "pending" before anything is removed;
each step is marked as it ends (done, gone, skipped, failed). A run still
marked "running" whose process is gone was interrupted: the next
`clean --apply` shows it and finishes it (re-checking every step).
"""

from __future__ import annotations

import fcntl
import json
import os
import sqlite3
import time
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from tamer.errors import TamerError
from tamer.plan import Plan
from tamer.state import state_dir

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id INTEGER PRIMARY KEY AUTOINCREMENT, host TEXT NOT NULL, plan_id TEXT NOT NULL, plan TEXT NOT NULL,
    started REAL NOT NULL, finished REAL, status TEXT NOT NULL, pid INTEGER NOT NULL);
CREATE TABLE IF NOT EXISTS steps (
    run_id INTEGER NOT NULL, idx INTEGER NOT NULL, kind TEXT NOT NULL, object_id TEXT NOT NULL,
    name TEXT NOT NULL, bytes INTEGER NOT NULL, status TEXT NOT NULL, detail TEXT NOT NULL DEFAULT '',
    at REAL, PRIMARY KEY (run_id, idx));
"""
FINAL_STEP = ("done", "gone", "skipped", "failed")


class CleanInProgress(TamerError):
    """Another `tamer clean --apply` is running against this state directory."""


@dataclass(frozen=True)
class Step:
    idx: int
    kind: str
    object_id: str
    name: str
    bytes: int
    status: str  # pending, done, gone (already removed), skipped, failed
    detail: str


@dataclass(frozen=True)
class Run:
    id: int
    host: str
    plan_id: str
    plan: Plan
    started: float
    finished: float | None
    status: str  # running, done, partial, interrupted
    steps: tuple[Step, ...]

    @property
    def pending(self) -> tuple[Step, ...]:
        return tuple(s for s in self.steps if s.status == "pending")


class Journal:
    def __init__(self, path: Path | None = None) -> None:
        self.path = path or state_dir() / "journal.sqlite"
        self._lock_file: IO[str] | None = None
        with closing(self._db()) as db, db:
            db.executescript(SCHEMA)

    def _db(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.path, timeout=30)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")  # a step marked done must survive a crash right after
        return db

    # -- one clean at a time -------------------------------------------------
    def lock(self) -> None:
        fh = open(str(self.path) + ".lock", "w")  # noqa: SIM115 - held until unlock()
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.close()
            raise CleanInProgress("another `tamer clean --apply` is running right now; wait for it to finish "
                                  "(or stop it), then run this again") from None
        self._lock_file = fh

    def unlock(self) -> None:
        if self._lock_file:
            fcntl.flock(self._lock_file, fcntl.LOCK_UN)
            self._lock_file.close()
            self._lock_file = None

    # -- runs ------------------------------------------------------------------
    def start(self, plan: Plan) -> int:
        with closing(self._db()) as db, db:
            cur = db.execute("INSERT INTO runs (host, plan_id, plan, started, status, pid) VALUES (?,?,?,?,?,?)",
                             (plan.host, plan.plan_id, json.dumps(plan.to_json()), time.time(), "running",
                              os.getpid()))
            run_id = int(cur.lastrowid or 0)
            db.executemany("INSERT INTO steps (run_id, idx, kind, object_id, name, bytes, status) "
                           "VALUES (?,?,?,?,?,?,'pending')",
                           [(run_id, i, a.kind, a.id, a.name, a.bytes) for i, a in enumerate(plan.actions)])
        return run_id

    def mark(self, run_id: int, idx: int, status: str, detail: str = "") -> None:
        with closing(self._db()) as db, db:
            db.execute("UPDATE steps SET status = ?, detail = ?, at = ? WHERE run_id = ? AND idx = ?",
                       (status, detail, time.time(), run_id, idx))

    def finish(self, run_id: int, status: str) -> None:
        with closing(self._db()) as db, db:
            db.execute("UPDATE runs SET status = ?, finished = ? WHERE id = ?", (status, time.time(), run_id))

    def adopt(self, run_id: int) -> None:
        """This process takes over an interrupted run."""
        with closing(self._db()) as db, db:
            db.execute("UPDATE runs SET status = 'running', pid = ?, finished = NULL WHERE id = ?",
                       (os.getpid(), run_id))

    def get(self, run_id: int) -> Run:
        with closing(self._db()) as db:
            row = db.execute("SELECT id, host, plan_id, plan, started, finished, status FROM runs WHERE id = ?",
                             (run_id,)).fetchone()
            if row is None:
                raise TamerError(f"no clean run {run_id} in the journal {self.path}")
            steps = db.execute("SELECT idx, kind, object_id, name, bytes, status, detail FROM steps "
                               "WHERE run_id = ? ORDER BY idx", (run_id,)).fetchall()
        return Run(id=row[0], host=row[1], plan_id=row[2], plan=Plan.from_json(json.loads(row[3])),
                   started=row[4], finished=row[5], status=row[6], steps=tuple(Step(*s) for s in steps))

    def unfinished(self, host: str) -> Run | None:
        """The latest run against `host` that did not end (killed, engine gone), if any."""
        with closing(self._db()) as db:
            row = db.execute("SELECT id FROM runs WHERE host = ? AND status IN ('running', 'interrupted') "
                             "ORDER BY id DESC LIMIT 1", (host,)).fetchone()
        return self.get(int(row[0])) if row else None

    def abandon(self, run_id: int) -> None:
        with closing(self._db()) as db, db:
            db.execute("UPDATE runs SET status = 'abandoned', finished = ? WHERE id = ?", (time.time(), run_id))
            db.execute("UPDATE steps SET status = 'skipped', detail = 'run abandoned by the user' "
                       "WHERE run_id = ? AND status = 'pending'", (run_id,))

    def recent(self, limit: int = 10) -> list[dict[str, Any]]:
        with closing(self._db()) as db:
            rows = db.execute("SELECT id, host, plan_id, started, finished, status FROM runs ORDER BY id DESC "
                              "LIMIT ?", (limit,)).fetchall()
        return [dict(zip(("id", "host", "plan_id", "started", "finished", "status"), r, strict=True)) for r in rows]
