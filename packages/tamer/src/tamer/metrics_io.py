"""The effects behind `tamer metrics` and `tamer serve`: reading the journals, writing the textfile.

Pure rendering is tamer.metrics; this module reads what it needs from tamer's state (read-only: an
exporter never creates or migrates a journal) and writes node_exporter's textfile atomically.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import tempfile
from pathlib import Path

from tamer.errors import TamerError, UsageError
from tamer.metrics import CleanFacts
from tamer.state import state_dir

TEXTFILE_NAME = "tamer.prom"
# the operations whose journals tamer keeps (tamer.operation kinds), shown even at 0 so an alert on
# `tamer_journal_unfinished > 0` has a series to watch
OPERATIONS = ("clean", "move", "adopt")
# runs a clean finished (partial: some steps kept on purpose, which is an end too)
_FINISHED = ("done", "partial")
_UNFINISHED = ("running", "interrupted")


def process_alive(pid: int) -> bool:
    """Whether the process that wrote a journal still runs: then its operation is going on, not stuck.
    (Another user's process counts as alive: we may not signal it, and it exists.)"""
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def read_clean_facts(host: str, journal: Path | None = None, operations: Path | None = None) -> CleanFacts:
    """The latest finished clean against `host` (the address the clean used, as the journal keys runs)
    and the operations that did not finish: begun, not ended, and their process gone (killed,
    interrupted); one going on right now is not counted. A journal that does not exist yet means "no clean yet";
    one that cannot be read gives CleanFacts(readable=False) (the families are then left out).

    journal: the clean journal (default: state_dir()/journal.sqlite);
    operations: the folder of volume operation journals (default: state_dir()/operations).
    """
    try:
        base = state_dir() if journal is None or operations is None else None
    except TamerError:
        return CleanFacts(readable=False)
    journal = journal or (base or Path()) / "journal.sqlite"
    operations = operations or (base or Path()) / "operations"
    unfinished = dict.fromkeys(OPERATIONS, 0)
    last_at: float | None = None
    freed = 0
    if journal.exists():
        try:
            # read-only, and no WAL file is created: this must never change tamer's state
            with contextlib.closing(
                sqlite3.connect(f"{journal.as_uri()}?mode=ro", uri=True, timeout=10)
            ) as db:
                row = db.execute(
                    f"SELECT id, finished FROM runs WHERE host = ? AND finished IS NOT NULL "
                    f"AND status IN {_FINISHED!r} ORDER BY finished DESC, id DESC LIMIT 1",
                    (host,),
                ).fetchone()
                if row is not None:
                    last_at = float(row[1])
                    freed = int(
                        db.execute(
                            "SELECT coalesce(sum(bytes), 0) FROM steps WHERE run_id = ? AND status = 'done'",
                            (row[0],),
                        ).fetchone()[0]
                    )
                unfinished["clean"] = sum(
                    1
                    for status, pid in db.execute(
                        f"SELECT status, pid FROM runs WHERE host = ? AND status IN {_UNFINISHED!r}", (host,)
                    )
                    if status == "interrupted" or not process_alive(int(pid or 0))
                )
        except (sqlite3.Error, OSError, ValueError, TypeError):
            return CleanFacts(readable=False)
    try:
        kinds = [p for p in operations.iterdir() if p.is_dir()] if operations.is_dir() else []
        for folder in kinds:
            count = 0
            for path in folder.glob("*.json"):
                pid = 0
                with contextlib.suppress(OSError, ValueError, TypeError, AttributeError):
                    pid = int(json.loads(path.read_text()).get("pid") or 0)
                # an unreadable journal is still an operation that did not finish
                count += 0 if process_alive(pid) else 1
            unfinished[folder.name] = unfinished.get(folder.name, 0) + count
    except OSError:
        return CleanFacts(readable=False)
    return CleanFacts(last_clean_at=last_at, last_clean_freed=freed, unfinished=unfinished)


# -- node_exporter's textfile collector ----------------------------------------------------------
def _remove_stale_temporaries(folder: Path, name: str) -> None:
    """The temporaries of earlier writes whose process is gone (killed before the rename)."""
    prefix = f".{name}."
    with contextlib.suppress(OSError):
        for entry in os.listdir(folder):
            if not entry.startswith(prefix) or not entry.endswith(".tmp"):
                continue
            pid = entry[len(prefix) :].split(".", 1)[0]
            if not pid.isdigit() or int(pid) == os.getpid() or process_alive(int(pid)):
                continue  # another live writer's (or not one of ours at all)
            with contextlib.suppress(OSError):
                os.unlink(folder / entry)


def check_textfile_dir(folder: str) -> Path:
    """The folder `--textfile` names, checked before any work: it exists, is a folder, and this user
    may create files in it. Raises UsageError saying what is wrong (nothing was written)."""
    path = Path(folder)
    hint = (
        "expected an existing folder this user can write, the one node_exporter reads "
        "(--collector.textfile.directory); nothing was written"
    )
    if not folder.strip():
        raise UsageError(f"--textfile needs a folder, got an empty one; {hint}")
    if not path.exists():
        raise UsageError(f"--textfile {folder}: no such folder; {hint}; create it or fix the path")
    if not path.is_dir():
        raise UsageError(f"--textfile {folder}: not a folder; {hint}")
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"--textfile {folder}: this user may not create files there; {hint}")
    return path


def write_textfile(folder: Path, text: str, name: str = TEXTFILE_NAME) -> Path:
    """Write `folder/name` atomically: a temporary file in the same folder (named so the collector,
    which reads only *.prom, never picks it up), fsync, chmod 0644 (node_exporter often runs as
    another user), rename over the old file, fsync the folder. A reader sees the old file or the new
    one, never a part. Raises TamerError (the old file stays) when the write fails."""
    target = folder / name
    _remove_stale_temporaries(folder, name)
    try:
        # the pid in the name: a run killed before its rename (kill -9, a cron timeout) leaves a file
        # the next run can tell is nobody's, instead of one more in the collector's folder every time
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.{os.getpid()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise TamerError(
            f"could not write {target} ({exc.strerror or exc}); the previous file, if any, is unchanged; "
            "make room or fix the folder and run this again"
        ) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(text.encode("utf-8"))
            out.flush()
            os.fchmod(out.fileno(), 0o644)
            os.fsync(out.fileno())
        os.replace(tmp, target)
    except BaseException as exc:  # Ctrl-C too: never leave the temporary behind
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if not isinstance(exc, OSError):
            raise
        raise TamerError(
            f"could not write {target} ({exc.strerror or exc}); the previous file, if any, is unchanged; "
            "make room or fix the folder and run this again"
        ) from None
    dir_fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(dir_fd)  # the rename itself survives a crash
    finally:
        os.close(dir_fd)
    return target
