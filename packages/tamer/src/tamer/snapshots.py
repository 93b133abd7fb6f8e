"""Snapshots of what a Docker host costs, recorded over time in tamer's state (SQLite).

Every `tamer df` and every `tamer record` (meant for a timer) appends one Snapshot: the
totals per kind, what is reclaimable (safe / needs a decision), the bytes per owner, per
volume and per container log, the data-root's size and the free space of its filesystem.
`tamer history` reads them back (`series`) to say what grew and when the disk fills;
`tamer metrics` serves the newest one (`latest`).

The API (stable; it only grows):

    snap = take_snapshot(host=None)        # reads the host as `tamer df` does -> Snapshot
    record(snap)                           # appends it to <state>/snapshots.sqlite
    latest()                               # the last one recorded (any engine), or None
    latest(snap.engine)                    # the last one recorded for that engine
    series(snap.engine, since=time.time() - 30 * 86400)  # oldest first
    series(snap.engine, details="ends")    # only the first and last with their volume/owner/log rows

Parts:
- `Snapshot` and its rows (KindSize, OwnerSize, VolumeSize, LogSize): frozen dataclasses, sizes
  in int bytes. A size tamer could not measure (a remote engine: no log sizes, no data-root,
  no free space) is None, never a made-up 0.
- `snapshot_from_df(inv, report, fs)`: pure, from what `tamer df` already computed.
- `take_snapshot(...)`: the effectful read (engine, data-root walk, statvfs).
- The store: `record`, `latest`, `series`, `engines`. Each opens the database, does its one
  transaction and closes it, so two processes (two `tamer record` from overlapping timers, a
  `tamer serve` reading) never see half a snapshot. `record` thins old snapshots (the newest per
  hour past 2 days, per day past 35 days), so a frequent timer keeps the store bounded. A damaged, locked, newer-schema or
  unreadable database raises SnapshotsUnavailable (a TamerError, exit 1) whose message says
  what to do; `tamer df` turns that into a warning, `tamer history` into an error.

Order: `series` is oldest first by `taken_at` (the host's clock when the read began), ties
by recording order; `latest` is the last one *recorded* (not the largest `taken_at`), so a
clock set back never hides the newest snapshot from `tamer metrics`.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import sys
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from tamer.errors import TamerError
from tamer.state import StateUnavailable, keep_it_advice, state_dir, why_unwritable

if TYPE_CHECKING:
    from tamer.accounting import DiskReport
    from tamer.engine import Engine
    from tamer.inventory import Inventory

R = TypeVar("R", "LogSize", "VolumeSize", "OwnerSize")
STORE_NAME = "snapshots.sqlite"
SCHEMA_VERSION = 2  # PRAGMA user_version of the store; a newer one is refused, never rewritten
# 1 -> 2: the `summary` column (a snapshot without its per-owner/volume/log rows), filled from then on
SNAPSHOT_FORMAT = 1  # the "format" inside each stored JSON document
BUSY_TIMEOUT_S = 10.0  # how long a write waits for another tamer's write (a snapshot is one short INSERT)
# record() thins old snapshots, so a timer every minute (or `tamer serve` recording) keeps the store bounded:
# older than HOURLY_AFTER_S, the newest of each hour is kept; older than DAILY_AFTER_S, the newest of each day
HOURLY_AFTER_S = 2 * 86400.0
DAILY_AFTER_S = 35 * 86400.0
THIN_STEP_S = 3600.0  # how far past the newest kept snapshot a new one moves the thinning (see record)
DETAILS = ("all", "ends", "none")

# one statement each: executescript would commit the write transaction they run in
_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS snapshots (seq INTEGER PRIMARY KEY AUTOINCREMENT, engine TEXT NOT NULL, "
    "taken_at REAL NOT NULL, recorded_at REAL NOT NULL, data TEXT NOT NULL, summary TEXT)",
    "CREATE INDEX IF NOT EXISTS snapshots_engine_time ON snapshots (engine, taken_at)",
)


class SnapshotsUnavailable(TamerError):
    """The snapshot store cannot be read or written (damaged, locked, newer schema, no permission)."""


# -- the values ------------------------------------------------------------------
@dataclass(frozen=True)
class KindSize:
    """One row of `tamer df`'s table: a kind (image, container, volume, log, build-cache)."""

    kind: str
    count: int
    bytes: int  # as `tamer df` shows it: layers once, each volume folder once
    safe: int  # reclaimable, nothing anyone would miss
    needs_decision: int  # reclaimable if someone decides so


@dataclass(frozen=True)
class OwnerSize:
    """What one owner (`project:NAME`, `container:NAME`, `unowned`, `shared`) holds."""

    owner: str
    layers: int  # image bytes only this owner uses, plus its writable layers
    volumes: int
    logs: int

    @property
    def bytes(self) -> int:
        return self.layers + self.volumes + self.logs


@dataclass(frozen=True)
class VolumeSize:
    """One volume. bytes: apparent size as docker counts it (file sizes, hard links once);
    allocated: blocks on disk like `du -sB1` of its data folder. None: not measured."""

    name: str
    placement: str  # default, bind, symlink
    kind: str  # named, anonymous
    owner: str
    bytes: int | None
    allocated: int | None = None
    in_use: bool = False


@dataclass(frozen=True)
class LogSize:
    """One container's log files (the json-file/local log and its rotated siblings)."""

    container: str  # the container's name
    container_id: str
    owner: str
    bytes: int | None  # apparent; None when not measured (remote engine, driver keeping nothing here)
    allocated: int | None = None


@dataclass(frozen=True)
class Snapshot:
    """What one engine's host cost at one moment.

    taken_at: unix seconds (the host's clock when the read began). engine: the engine's identity
    `ID@data-root` (inventory.engine_identity; the address when the engine reports no ID).
    host: the address used to reach it. sizing: "local" (data-root walked) or "engine".
    data_root_bytes: allocated bytes under the data-root (like `du -sB1`), None unless walked.
    fs_size_bytes / fs_free_bytes: the data-root's filesystem, size and space available to
    unprivileged users (df's Size and Avail), None unless the data-root is on this machine.
    seq: the store's row number once recorded (None for a snapshot not read from the store).
    details: False when read without its owners, volumes and logs (`series(..., details="none")`):
    then those are empty because they were not read, not because there are none.
    """

    taken_at: float
    engine: str
    host: str
    sizing: str
    kinds: tuple[KindSize, ...]
    reclaimable_safe: int
    reclaimable_decision: int
    owners: tuple[OwnerSize, ...] = ()
    volumes: tuple[VolumeSize, ...] = ()
    logs: tuple[LogSize, ...] = ()
    data_root: str = ""
    data_root_bytes: int | None = None
    fs_size_bytes: int | None = None
    fs_free_bytes: int | None = None
    seq: int | None = field(default=None, compare=False)
    details: bool = field(default=True, compare=False)

    @property
    def total_bytes(self) -> int:
        """Everything Docker holds that tamer attributes (the sum of the kinds)."""
        return sum(k.bytes for k in self.kinds)

    @property
    def taken_at_datetime(self) -> datetime:
        from datetime import UTC

        return datetime.fromtimestamp(self.taken_at, tz=UTC)

    def kind_bytes(self, kind: str) -> int:
        return next((k.bytes for k in self.kinds if k.kind == kind), 0)

    def to_json(self) -> dict[str, Any]:
        """Plain JSON data; Snapshot.from_json reads it back."""
        return self._json(copy=True)

    def _json(self, *, copy: bool) -> dict[str, Any]:
        data = self.summary_json()
        # the rows are flat frozen dataclasses: their __dict__ is their JSON (asdict's deep copy costs
        # 20 ms on a host with 1,000 containers, on every `tamer df`); `copy` False: the rows' own
        # __dict__s, for a caller that only reads them at once (record's json.dumps)
        for key in _DETAIL_ROWS:
            rows = getattr(self, key)
            data[key] = [dict(vars(row)) for row in rows] if copy else [vars(row) for row in rows]
        return data

    def summary_json(self) -> dict[str, Any]:
        """to_json() without the per-owner, per-volume and per-log rows (read back with details=False)."""
        data = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in _NOT_STORED}
        data["kinds"] = [dict(vars(k)) for k in self.kinds]
        data["format"] = SNAPSHOT_FORMAT
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], seq: int | None = None, details: bool = True) -> Snapshot:
        """The Snapshot `to_json` (or, details=False, `summary_json`) wrote; KeyError/TypeError/ValueError
        when it is not one."""
        if not isinstance(data, dict):  # a damaged row: '[]' or '"x"' raised AttributeError, uncaught
            raise ValueError(f"a snapshot is a JSON object, got {type(data).__name__}")
        if data.get("format") != SNAPSHOT_FORMAT:
            raise ValueError(f"snapshot format {data.get('format')!r}, expected {SNAPSHOT_FORMAT}")
        taken_at = float(data["taken_at"])
        # NaN, inf or 1e300 is no time: every view that dates the snapshot crashed on it
        if not (math.isfinite(taken_at) and _MIN_TIME <= taken_at <= _MAX_TIME):
            raise ValueError(f"taken_at {taken_at!r} is not a time from the year 1 to 9999")
        return cls(
            taken_at=taken_at,
            engine=str(data["engine"]),
            host=str(data["host"]),
            sizing=str(data["sizing"]),
            kinds=tuple(KindSize(**k) for k in data["kinds"]),
            reclaimable_safe=int(data["reclaimable_safe"]),
            reclaimable_decision=int(data["reclaimable_decision"]),
            owners=tuple(OwnerSize(**o) for o in data.get("owners", ())),
            volumes=tuple(VolumeSize(**v) for v in data.get("volumes", ())),
            logs=tuple(LogSize(**lg) for lg in data.get("logs", ())),
            data_root=str(data.get("data_root", "")),
            data_root_bytes=_opt_int(data.get("data_root_bytes")),
            fs_size_bytes=_opt_int(data.get("fs_size_bytes")),
            fs_free_bytes=_opt_int(data.get("fs_free_bytes")),
            seq=seq,
            details=details,
        )


_MIN_TIME = -62135596800.0  # 0001-01-01, what a datetime can hold
_MAX_TIME = 253402300799.0  # 9999-12-31 23:59:59
_DETAIL_ROWS = ("owners", "volumes", "logs")
_NOT_STORED = frozenset({"seq", "details", *_DETAIL_ROWS})


def _opt_int(value: Any) -> int | None:
    return None if value is None else int(value)


@dataclass(frozen=True)
class FsUsage:
    """A filesystem's size and the bytes available to unprivileged users (statvfs: f_blocks, f_bavail)."""

    size: int
    free: int


# -- pure: from what `tamer df` computed -------------------------------------------
def snapshot_from_df(inv: Inventory, report: DiskReport, fs: FsUsage | None = None) -> Snapshot:
    """The Snapshot of a host `tamer df` has read. Pure.

    Parameters: inv, the Inventory; report, `accounting.disk_report(inv)`; fs, the data-root's
    filesystem (`filesystem_usage(inv)`), None when unknown.
    """
    local = inv.sizing == "local"
    # the rows made as their dataclasses' __init__ makes them, without its guarded setattr per field (some
    # 2,300 rows at 1,003 containers, made after the walk, on the way to the report): see _row
    logs = tuple(
        _row(
            LogSize,
            container=c.name,
            container_id=c.id,
            owner=c.owner,
            bytes=c.log.size.apparent if c.log.size else None,
            allocated=c.log.size.allocated if c.log.size and local else None,
        )
        for c in inv.containers
        if c.log.size is not None or c.log.path
    )
    volumes = tuple(
        _row(
            VolumeSize,
            name=v.name,
            placement=v.placement,
            kind=v.kind,
            owner=v.owner,
            bytes=v.size.apparent if v.size else None,
            allocated=v.size.allocated if v.size and local else None,
            in_use=v.in_use,
        )
        for v in inv.volumes
    )
    return Snapshot(
        taken_at=inv.taken_at.timestamp(),
        engine=inv.engine_id or inv.host,
        host=inv.host,
        sizing=inv.sizing,
        kinds=tuple(KindSize(t.kind, t.count, t.size, t.safe, t.needs_decision) for t in report.totals),
        reclaimable_safe=report.safe_bytes,
        reclaimable_decision=report.decision_bytes,
        owners=tuple(
            _row(OwnerSize, owner=o.owner, layers=o.layers, volumes=o.volumes, logs=o.logs)
            for o in report.owners
        ),
        volumes=volumes,
        logs=logs,
        data_root=inv.data_root,
        data_root_bytes=report.data_root_allocated,
        fs_size_bytes=fs.size if fs else None,
        fs_free_bytes=fs.free if fs else None,
    )


def _row(cls: type[R], **values: Any) -> R:
    """cls(**values) for a row class (LogSize, VolumeSize, OwnerSize: frozen, no __post_init__) given every
    field in its order: the same value, its __dict__ as __init__ fills it (vars() of it is its JSON)."""
    row = object.__new__(cls)
    row.__dict__.update(values)
    return row


# -- effects: reading the host -----------------------------------------------------
def filesystem_usage(inv: Inventory) -> FsUsage | None:
    """statvfs of the data-root's filesystem, when the data-root was walked here (else None: a remote
    engine's data-root is not on this machine, and a local path of the same name would be another disk)."""
    if inv.sizing != "local" or not inv.data_root:
        return None
    try:
        st = os.statvfs(inv.data_root)
    except OSError:
        return None
    return FsUsage(size=st.f_blocks * st.f_frsize, free=st.f_bavail * st.f_frsize)


def take_snapshot(
    engine: Engine | None = None,
    *,
    host: str | None = None,
    sizing: str = "auto",
    progress: Callable[[int, int], None] | None = None,
) -> Snapshot:
    """Read the host as `tamer df` does and return its Snapshot (not recorded: call `record`).

    Parameters: engine, a connected `tamer.engine.Engine` (else one is connected to `host`,
    None meaning $DOCKER_HOST or the local socket); sizing "auto" | "local" | "engine" as
    `tamer df --sizing`; progress(done, total) during the walk.
    Raises the engine's TamerErrors (EngineUnreachable, ...).

    >>> snap = take_snapshot()                                     # doctest: +SKIP
    >>> record(snap); latest(snap.engine).total_bytes == snap.total_bytes  # doctest: +SKIP
    True
    """
    from tamer.accounting import disk_report
    from tamer.collect import read_raw_snapshot
    from tamer.engine import connect
    from tamer.inventory import build_inventory

    inv = build_inventory(read_raw_snapshot(engine or connect(host), sizing=sizing, progress=progress))
    return snapshot_from_df(inv, disk_report(inv), filesystem_usage(inv))


# -- the store -----------------------------------------------------------------------
def store_path() -> Path:
    """<state dir>/snapshots.sqlite (raises StateDirUnusable when the state dir cannot be used)."""
    return state_dir() / STORE_NAME


def _what_to_do(path: Path) -> str:
    return f"move it aside (mv {path} {path}.broken) and a new history starts with the next `tamer record`"


def _expected(path: Path, exc: BaseException, expected: str) -> str:
    """What was expected and what to do: a full or read-only disk is said as such (the store is fine, and
    moving it aside would lose the history), anything else as a store to set aside."""
    why = why_unwritable(Path(path).parent, exc)
    if why is not None:
        return f"expected a state folder with room to write; {keep_it_advice(path, why)}"
    return f"{expected}; {_what_to_do(path)}"


@contextmanager
def _open(path: Path | None, *, write: bool) -> Iterator[sqlite3.Connection | None]:
    """A connection with the schema checked (and made, for a write); None for a read of no store."""
    where = path or store_path()
    if not write and not where.exists():
        yield None
        return
    try:
        db = sqlite3.connect(where, timeout=BUSY_TIMEOUT_S, isolation_level=None)
    except (sqlite3.Error, OSError) as exc:
        raise SnapshotsUnavailable(
            f"tamer's snapshot store {where} cannot be opened ({exc}); "
            + _expected(where, exc, f"expected a SQLite file this user can {'write' if write else 'read'}")
        ) from None
    with closing(db):
        try:
            if write:
                db.execute("BEGIN IMMEDIATE")  # one writer at a time; the others wait (BUSY_TIMEOUT_S)
            version = int(db.execute("PRAGMA user_version").fetchone()[0])
            if version > SCHEMA_VERSION:
                raise SnapshotsUnavailable(
                    f"tamer's snapshot store {where} has schema version {version}, newer than this "
                    f"tamer's {SCHEMA_VERSION} (written by a newer tamer); upgrade tamer, or "
                    f"{_what_to_do(where)}"
                )
            if write and version < SCHEMA_VERSION:
                if version == 1 and not _has_summary(db):
                    db.execute("ALTER TABLE snapshots ADD COLUMN summary TEXT")
                for statement in _SCHEMA:
                    db.execute(statement)
                db.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            yield db
            if write and db.in_transaction:
                db.execute("COMMIT")
        except sqlite3.Error as exc:
            if db.in_transaction:
                db.execute("ROLLBACK")
            locked = "locked" in str(exc) or "busy" in str(exc)
            raise SnapshotsUnavailable(
                f"tamer's snapshot store {where} cannot be {'written' if write else 'read'} ({exc}); "
                + (
                    f"another tamer held it for over {BUSY_TIMEOUT_S:.0f}s; retry"
                    if locked
                    else _expected(where, exc, "expected a SQLite file written by tamer")
                )
            ) from None
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise


def record(snapshot: Snapshot, *, path: Path | None = None) -> None:
    """Append `snapshot` to the store (made on first use, 0600 in the 0700 state dir), and thin that
    engine's older snapshots: past HOURLY_AFTER_S before this one only the newest of each hour stays,
    past DAILY_AFTER_S the newest of each day (UTC).

    Raises SnapshotsUnavailable (damaged, locked for over BUSY_TIMEOUT_S, newer schema, read-only),
    StateDirUnusable (no state dir). Either way nothing is half-written (one SQLite transaction).
    """
    where = path or store_path()
    if not where.exists():
        try:
            os.close(os.open(where, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW, 0o600))
        except OSError as exc:
            raise SnapshotsUnavailable(
                f"tamer's snapshot store {where} cannot be created ({exc.strerror or exc}); expected a "
                "folder this user can write; fix it, or point TAMER_STATE_DIR at another folder"
            ) from None
    # the fault seam the tests use (tamer.operation.faults): a handler can only have been installed by code
    # that imported it, and a plain `tamer df` need not pay for importing it (12 ms)
    operation = sys.modules.get("tamer.operation")
    hit = operation.faults.hit if operation is not None else _no_fault

    # the same text as json.dumps(snapshot.to_json(), ...): no copy of each row, no cycle check (a snapshot's
    # JSON is a tree of new lists over the rows' own dicts of numbers and strings)
    data = json.dumps(snapshot._json(copy=False), separators=(",", ":"), check_circular=False)
    summary = json.dumps(snapshot.summary_json(), separators=(",", ":"))
    with _open(where, write=True) as db:
        assert db is not None
        (newest,) = db.execute(
            "SELECT max(taken_at) FROM snapshots WHERE engine = ?", (snapshot.engine,)
        ).fetchone()
        db.execute(
            "INSERT INTO snapshots (engine, taken_at, recorded_at, data, summary) VALUES (?, ?, ?, ?, ?)",
            (snapshot.engine, snapshot.taken_at, time.time(), data, summary),
        )
        hit("snapshots.record.inserted")  # a kill from here on must leave the store as it was
        # Thin as if this snapshot came at most THIN_STEP_S after the newest one kept: one record with the
        # clock set years ahead (faketime, a bad RTC) thinned every real snapshot to one a day. Timers record
        # more often than that; after a real gap (a host off for months) the following records catch up.
        reference = snapshot.taken_at if newest is None else min(snapshot.taken_at, newest + THIN_STEP_S)
        for older_than, bucket in ((DAILY_AFTER_S, 86400), (HOURLY_AFTER_S, 3600)):
            cut = reference - older_than
            db.execute(
                "DELETE FROM snapshots WHERE engine = ? AND taken_at < ? AND seq NOT IN ("
                "SELECT max(seq) FROM snapshots WHERE engine = ? AND taken_at < ? "
                f"GROUP BY CAST(taken_at / {bucket} AS INTEGER))",
                (snapshot.engine, cut, snapshot.engine, cut),
            )
        hit("snapshots.record.thinned")


def _no_fault(point: str) -> None:
    """No fault handler can be installed: tamer.operation was never imported."""


def _parse_row(row: tuple[int, str, bool]) -> Snapshot | None:
    """A stored row as a Snapshot; None when it is damaged (or another version's)."""
    seq, text, details = row
    try:
        return Snapshot.from_json(json.loads(text), seq=seq, details=bool(details))
    except (ValueError, KeyError, TypeError, AttributeError, OverflowError):
        return None


def _rows_to_snapshots(rows: list[tuple[int, str, bool]], where: Path) -> list[Snapshot]:
    parsed = [_parse_row(row) for row in rows]
    out = [snap for snap in parsed if snap is not None]
    _warn_damaged(len(parsed) - len(out), where)
    return out


def _warn_damaged(bad: int, where: Path) -> None:
    if bad:
        warnings.warn(
            f"{bad} snapshot(s) in {where} could not be read and were skipped (damaged rows, or "
            "written by another tamer version)",
            StateUnavailable,
            stacklevel=4,
        )


def latest(engine: str | None = None, *, path: Path | None = None) -> Snapshot | None:
    """The snapshot recorded last (for `engine`, an identity as in Snapshot.engine; None: any engine).

    None when there is none. Raises SnapshotsUnavailable when the store cannot be read.
    """
    where = path or store_path()
    with _open(where, write=False) as db:
        if db is None or not _has_table(db):
            return None
        query = "SELECT seq, data, 1 FROM snapshots"
        params: tuple[Any, ...] = ()
        if engine is not None:
            query += " WHERE engine = ?"
            params = (engine,)
        # the newest that can be read: one damaged row must not hide every good one before it
        skipped = 0
        newest: Snapshot | None = None
        for row in db.execute(query + " ORDER BY seq DESC", params):
            newest = _parse_row(row)
            if newest is not None:
                break
            skipped += 1
    _warn_damaged(skipped, where)
    return newest


def series(
    engine: str,
    since: float | None = None,
    *,
    until: float | None = None,
    details: str = "all",
    path: Path | None = None,
) -> list[Snapshot]:
    """The snapshots of `engine` taken at or after `since` (unix seconds; None: all), and at or
    before `until`, oldest first (by taken_at, then recording order). Empty when there are none.

    details: "all" reads every snapshot whole; "ends" only the first and the last whole (what growth
    and top growers compare), the rest without owners, volumes and logs (Snapshot.details False);
    "none" reads none whole. A year of hourly snapshots of a host with 500 volumes reads in well
    under a second with "ends", several seconds with "all".
    Raises SnapshotsUnavailable when the store cannot be read; ValueError for another `details`.
    """
    if details not in DETAILS:
        raise ValueError(f"details must be one of {', '.join(DETAILS)}, got {details!r}")
    where = path or store_path()
    with _open(where, write=False) as db:
        if db is None or not _has_table(db):
            return []
        light = "coalesce(summary, data)" if _has_summary(db) else "data"
        column = "data" if details == "all" else light
        rows = db.execute(
            f"SELECT seq, {column}, {int(details == 'all')} FROM snapshots "
            "WHERE engine = ? AND taken_at >= ? AND taken_at <= ? ORDER BY taken_at, seq",
            (engine, -1e300 if since is None else since, 1e300 if until is None else until),
        ).fetchall()
        if details == "ends" and rows:
            ends = {rows[0][0], rows[-1][0]}
            full = dict(
                db.execute(
                    f"SELECT seq, data FROM snapshots WHERE seq IN ({','.join('?' * len(ends))})", tuple(ends)
                ).fetchall()
            )
            rows = [(seq, full[seq], True) if seq in full else (seq, text, False) for seq, text, _ in rows]
    return _rows_to_snapshots(rows, where)


def engines(*, path: Path | None = None) -> list[tuple[str, int, float]]:
    """(engine, number of snapshots, taken_at of its last recorded one) for every engine in the store,
    the most recently recorded first. Raises SnapshotsUnavailable when the store cannot be read."""
    where = path or store_path()
    with _open(where, write=False) as db:
        if db is None or not _has_table(db):
            return []
        rows = db.execute(
            "SELECT engine, count(*), max(seq) FROM snapshots GROUP BY engine ORDER BY max(seq) DESC"
        ).fetchall()
        out = []
        for engine, count, last_seq in rows:
            (taken,) = db.execute("SELECT taken_at FROM snapshots WHERE seq = ?", (last_seq,)).fetchone()
            # a damaged taken_at (text, a blob) must not stop the listing: NaN says "no time"
            stamp = (
                float(taken) if isinstance(taken, int | float) and not isinstance(taken, bool) else math.nan
            )
            out.append((str(engine), int(count), stamp))
    return out


def _has_summary(db: sqlite3.Connection) -> bool:
    return any(row[1] == "summary" for row in db.execute("PRAGMA table_info(snapshots)"))


def _has_table(db: sqlite3.Connection) -> bool:
    return (
        db.execute("SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'snapshots'").fetchone()
        is not None
    )
