"""Last-used times over time, in SQLite, fed by `tamer watch` from the engine's events.

Docker keeps no "last used" for images or volumes; budget eviction needs one to
be true LRU. `tamer watch` follows container create/start/die, volume
mount/unmount and image pull/tag events and records, per object, the latest
time it was used. Without a history, planning falls back to container
timestamps and image creation times, and says so.
"""

from __future__ import annotations

import math
import sqlite3
import warnings
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from tamer.errors import TamerError
from tamer.state import StateUnavailable, keep_it_advice, state_dir, why_unwritable

SCHEMA = """
CREATE TABLE IF NOT EXISTS last_used (
    host TEXT NOT NULL, kind TEXT NOT NULL, id TEXT NOT NULL, at REAL NOT NULL,
    PRIMARY KEY (host, kind, id));
CREATE TABLE IF NOT EXISTS cursor (host TEXT PRIMARY KEY, at REAL NOT NULL);
"""


# The times a row may hold: what a datetime can say (year 1970 to 9999). SQLite stores whatever a
# damaged file or another writer put there (text, a blob, 1e300) in a REAL column; such a row is no
# time, and reading it as one crashed every plan and clean.
MIN_AT = 0.0
MAX_AT = 253402300799.0
_SANE_AT = f"typeof(at) IN ('real', 'integer') AND at BETWEEN {MIN_AT!r} AND {MAX_AT!r}"


def sane_time(value: Any) -> float | None:
    """`value` as unix seconds when it is a usable time (a finite number in MIN_AT..MAX_AT), else None."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    at = float(value)
    return at if math.isfinite(at) and MIN_AT <= at <= MAX_AT else None


@dataclass(frozen=True)
class Use:
    """One use of an object, derived from one engine event."""

    kind: str  # image, volume, container
    id: str
    at: float  # unix seconds


def uses_from_event(event: dict[str, Any]) -> list[Use]:
    """Which objects an engine event says were used, and when. Pure.

    Container events name their image (Actor.Attributes.image, as the user
    wrote it) and carry the image id in `from`; volume mount events name the
    volume (Actor.ID).
    """
    kind = event.get("Type")
    action = str(event.get("Action") or event.get("status") or "")
    at = float(event.get("timeNano", 0)) / 1e9 or float(event.get("time", 0))
    actor = event.get("Actor") or {}
    attrs = actor.get("Attributes") or {}
    uses: list[Use] = []
    if kind == "container" and action in ("create", "start", "die", "restart", "exec_start", "attach"):
        image = attrs.get("image") or event.get("from")
        if image:
            uses.append(Use("image", str(image), at))
        if actor.get("ID"):
            uses.append(Use("container", str(actor["ID"]), at))
    elif kind == "volume" and action in ("mount", "unmount", "create"):
        if actor.get("ID"):
            uses.append(Use("volume", str(actor["ID"]), at))
    elif kind == "image" and action in ("pull", "tag", "import", "load", "push"):
        if actor.get("ID"):
            uses.append(Use("image", str(actor["ID"]), at))
        name = attrs.get("name")
        if name:
            uses.append(Use("image", str(name), at))
    return uses


class HistoryUnavailable(TamerError):
    """The usage history cannot be written (a damaged or unreadable database)."""


class History:
    """The SQLite store of last-used times for one engine (`host`).

    A damaged or unreadable database (garbage in the file, a folder in its place, no
    permission) never stops a command that only reads or plans: reading then warns
    (`StateUnavailable`) and gives no history, as if `tamer watch` had never run.
    Recording into it raises HistoryUnavailable, which says how to fix it.
    """

    def __init__(self, host: str, path: Path | None = None) -> None:
        self.host = host
        self.problem: str | None = None
        try:
            self.path = path or state_dir() / "history.sqlite"
        except TamerError as exc:
            self.path = Path("history.sqlite")
            self._unusable(str(exc))
            return
        try:
            with closing(self._connect()) as db, db:
                db.executescript(SCHEMA)
        except (sqlite3.Error, OSError) as exc:
            self._unusable(f"tamer's usage history {self.path} cannot be read ({exc})", exc)

    def _unusable(self, why: str, exc: BaseException | None = None) -> None:
        full = why_unwritable(Path(self.path).parent, exc) if exc is not None else None
        self.problem = (
            f"{why}; going on without it (ages from container and image timestamps, as if "
            "`tamer watch` had never run); "
            + (
                keep_it_advice(self.path, full)  # a full or read-only disk: moving it aside would lose it
                if full is not None
                else f"to start a new history, move it aside (mv {self.path} {self.path}.broken)"
            )
        )
        warnings.warn(self.problem, StateUnavailable, stacklevel=3)

    def _what_to_do(self, exc: BaseException) -> str:
        full = why_unwritable(Path(self.path).parent, exc)
        if full is not None:
            return keep_it_advice(self.path, full)
        return f"move it aside (mv {self.path} {self.path}.broken) and rerun"

    def _connect(self) -> sqlite3.Connection:
        return sqlite3.connect(self.path, timeout=30)

    def _read(self, query: str, params: tuple[Any, ...]) -> list[Any]:
        if self.problem is not None:
            return []
        try:
            with closing(self._connect()) as db:
                return db.execute(query, params).fetchall()
        except (sqlite3.Error, OSError) as exc:
            self._unusable(f"tamer's usage history {self.path} cannot be read ({exc})")
            return []

    def record(self, uses: Iterable[Use], cursor: float | None = None) -> int:
        """Store uses (keeping the latest time per object) and the events cursor; the number stored.

        Raises HistoryUnavailable when the database cannot be written.
        """
        if self.problem is not None:
            raise HistoryUnavailable(self.problem.replace("going on without it", "nothing was recorded"))
        rows = [(self.host, u.kind, u.id, u.at) for u in uses]
        try:
            with closing(self._connect()) as db, db:
                # the latest time wins, but a damaged one (text, out of range) is no time to keep:
                # SQLite sorts text after every number, so max() would keep it for ever
                db.executemany(
                    "INSERT INTO last_used (host, kind, id, at) VALUES (?, ?, ?, ?) ON CONFLICT (host, kind, id) "
                    f"DO UPDATE SET at = CASE WHEN {_SANE_AT} THEN max(at, excluded.at) ELSE excluded.at END",
                    rows,
                )
                if cursor is not None:
                    db.execute(
                        "INSERT INTO cursor (host, at) VALUES (?, ?) ON CONFLICT (host) "
                        f"DO UPDATE SET at = CASE WHEN {_SANE_AT} THEN max(at, excluded.at) ELSE excluded.at END",
                        (self.host, cursor),
                    )
        except (sqlite3.Error, OSError) as exc:
            raise HistoryUnavailable(
                f"tamer's usage history {self.path} cannot be written ({exc}); nothing was recorded; "
                + self._what_to_do(exc)
            ) from None
        return len(rows)

    def cursor(self) -> float | None:
        """Where the last watch stopped (unix seconds); None when none did, or the value is damaged."""
        rows = self._read("SELECT at FROM cursor WHERE host = ?", (self.host,))
        if not rows:
            return None
        at = sane_time(rows[0][0])
        if at is None:
            self._damaged(1, "the events cursor")
        return at

    def resume_from(self, now: float, look_back_s: float = 86400) -> float:
        """Where a watch without --since starts: the cursor, or `look_back_s` before `now` (the
        engine's clock) when there is none, it is damaged, or it lies after `now`.

        A cursor after the engine's now is no place a watch stopped: the engine's clock was ahead
        once and was set right. Asking for events since then returns none until that moment comes
        (years, silently), and record()'s max() would keep it there; so it is put back (warned once)."""
        cursor = self.cursor()
        if cursor is not None and cursor <= now:
            return cursor
        start = now - look_back_s
        if cursor is not None:
            warnings.warn(
                f"tamer's usage history {self.path}: the events cursor "
                f"({datetime.fromtimestamp(cursor, tz=UTC):%Y-%m-%d %H:%M:%S} UTC) is ahead of the "
                f"engine's clock ({datetime.fromtimestamp(now, tz=UTC):%Y-%m-%d %H:%M:%S} UTC), as if "
                f"its clock was set back; reading events from {look_back_s / 3600:g} h back instead, and "
                "the cursor is put back",
                StateUnavailable,
                stacklevel=2,
            )
            self._reset_cursor(start)
        return start

    def _reset_cursor(self, at: float) -> None:
        if self.problem is not None:
            return
        try:
            with closing(self._connect()) as db, db:
                db.execute("UPDATE cursor SET at = ? WHERE host = ?", (at, self.host))
        except (sqlite3.Error, OSError) as exc:
            raise HistoryUnavailable(
                f"tamer's usage history {self.path} cannot be written ({exc}); nothing was recorded; "
                + self._what_to_do(exc)
            ) from None

    def last_used(self) -> dict[tuple[str, str], datetime]:
        """(kind, id or image name) -> last use, for planning; empty when the history is unreadable."""
        return {(k, i): datetime.fromtimestamp(at, tz=UTC) for k, i, at in self}

    def __iter__(self) -> Iterator[tuple[str, str, float]]:
        """(kind, id, at) oldest first; a damaged row is left out (with a warning), never crashed on:
        that object is then aged from its timestamps, as if `tamer watch` had not seen it."""
        rows = self._read("SELECT kind, id, at FROM last_used WHERE host = ? ORDER BY at", (self.host,))
        damaged = 0
        for kind, ident, raw in rows:
            at = sane_time(raw)
            if at is None or not isinstance(kind, str) or not isinstance(ident, str):
                damaged += 1
                continue
            yield kind, ident, at
        if damaged:
            self._damaged(damaged, "last-used time(s)")

    def _damaged(self, count: int, what: str) -> None:
        warnings.warn(
            f"tamer's usage history {self.path} holds {count} damaged {what} (not a time from 1970 to "
            "9999); left out: those objects are aged from their container and image timestamps, and "
            "the next `tamer watch` overwrites them; to start a new history, move it aside "
            f"(mv {self.path} {self.path}.broken)",
            StateUnavailable,
            stacklevel=3,
        )
