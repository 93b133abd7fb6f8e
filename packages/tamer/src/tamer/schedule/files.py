"""The unit folder: write tamer's units, list them, remove them (and only them).

A file is tamer's when it is a regular file named tamer-*.service or tamer-*.timer whose first
line is units.MARKER; nothing else is ever overwritten or removed, whatever its name. The
symlinks `systemctl enable` made for a removed unit (DIR/*.wants/NAME pointing at it) go with
it, since they would point at nothing. Each file is written to a temporary name in the folder
and renamed over, so a unit is never half-written; a run killed midway leaves some units new and
some old, and running install again finishes the job.
"""

from __future__ import annotations

import contextlib
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from tamer.errors import TamerError, UsageError
from tamer.schedule.units import UNIT_PREFIX, Unit, is_edited, is_tamer_unit

SYSTEM_UNIT_DIR = Path("/etc/systemd/system")
_MAX_UNIT_BYTES = 1 << 20  # a unit tamer wrote is a few hundred bytes; a bigger one is not as written


class UnitDirUnusable(TamerError):
    """The unit folder cannot be read or written (permissions, a file in its place)."""


def default_unit_dir(user: bool) -> Path:
    """/etc/systemd/system for the system manager; the user's ~/.config/systemd/user otherwise."""
    if not user:
        return SYSTEM_UNIT_DIR
    base = os.environ.get("XDG_CONFIG_HOME") or ""
    if not os.path.isabs(base):  # the XDG spec: a relative value is invalid and ignored
        base = os.path.join(os.path.expanduser("~"), ".config")
    return Path(base) / "systemd" / "user"


def _is_unit_name(name: str) -> bool:
    return name.startswith(UNIT_PREFIX) and (name.endswith(".service") or name.endswith(".timer"))


def _read_unit(path: Path) -> str | None:
    """A regular file's text (never through a symlink; at most 1 MiB), or None when it is not one."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError:
        return None
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return None
        chunks: list[bytes] = []
        size = 0
        while size < _MAX_UNIT_BYTES:
            chunk = os.read(fd, _MAX_UNIT_BYTES - size)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
        return b"".join(chunks).decode("utf-8", errors="replace")
    except OSError:
        return None
    finally:
        os.close(fd)


def edited_units(paths: list[Path]) -> list[Path]:
    """Those of tamer's units (by marker) whose content is no longer what tamer wrote."""
    edited = []
    for path in paths:
        text = _read_unit(path)
        if text is not None and is_tamer_unit(text) and is_edited(text):
            edited.append(path)
    return edited


def _refuse_edited(edited: list[Path], action: str) -> None:
    if edited:
        names = ", ".join(str(p) for p in edited)
        one = len(edited) == 1
        it = "it" if one else "them"
        raise UsageError(
            f"{names} {'was' if one else 'were'} edited since tamer wrote {it} (the content no longer matches "
            f"the digest on the second line); tamer will not {action} {it} and lose the edit: move "
            f"{'the file' if one else 'them'} away (keep a change in a drop-in: "
            "`systemctl edit NAME` writes NAME.d/override.conf, which tamer never touches) and run this again "
            "(nothing was changed)"
        )


def tamer_units_in(unit_dir: Path) -> list[Path]:
    """tamer's unit files in `unit_dir`, by name (an absent folder has none)."""
    try:
        names = sorted(os.listdir(unit_dir))
    except FileNotFoundError:
        return []
    except OSError as exc:
        raise UnitDirUnusable(f"cannot read the unit folder {unit_dir}: {exc.strerror or exc}") from None
    found = []
    for name in names:
        if _is_unit_name(name):
            head = _read_unit(unit_dir / name)
            if head is not None and is_tamer_unit(head):
                found.append(unit_dir / name)
    return found


@dataclass
class Changes:
    """What install or remove did to the unit folder."""

    unit_dir: Path
    written: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    links_removed: list[str] = field(default_factory=list)


def check_writable(unit_dir: Path, units: list[Unit]) -> None:
    """Refuse (UsageError, nothing written) when a unit's name is taken by a file that is not tamer's."""
    for unit in units:
        path = unit_dir / unit.name
        if not os.path.lexists(path):
            continue
        head = _read_unit(path)
        if head is None or not is_tamer_unit(head):
            raise UsageError(
                f"{path} exists and was not written by tamer (its first line is not tamer's marker); "
                "tamer will not overwrite it: move it away or pass --unit-dir DIR (nothing was written)"
            )
    # an edited unit is neither overwritten nor, when no longer wanted, removed
    wanted = {u.name for u in units}
    touched = [unit_dir / u.name for u in units] + [
        p for p in tamer_units_in(unit_dir) if p.name not in wanted
    ]
    _refuse_edited(edited_units(touched), "overwrite or remove")


def install_units(unit_dir: Path, units: list[Unit]) -> Changes:
    """Write `units` into `unit_dir` (created if missing) and remove tamer's units not among them."""
    check_writable(unit_dir, units)
    changes = Changes(unit_dir)
    try:
        unit_dir.mkdir(parents=True, exist_ok=True, mode=0o755)
        for unit in units:
            _write_atomically(unit_dir / unit.name, unit.text)
            changes.written.append(unit.name)
    except OSError as exc:
        raise UnitDirUnusable(
            f"cannot write units into {unit_dir}: {exc.strerror or exc}; written so far: "
            f"{', '.join(changes.written) or 'none'}; run as a user who may write there, or pass --unit-dir DIR"
        ) from None
    wanted = {u.name for u in units}
    stale = [p for p in tamer_units_in(unit_dir) if p.name not in wanted]
    _remove(unit_dir, stale, changes)
    return changes


def check_removable(unit_dir: Path) -> list[Path]:
    """tamer's units in `unit_dir`, after refusing (UsageError, nothing removed) when one was edited."""
    found = tamer_units_in(unit_dir)
    _refuse_edited(edited_units(found), "remove")
    return found


def remove_units(unit_dir: Path) -> Changes:
    """Remove tamer's units from `unit_dir` and the enable-symlinks that point at them; none when
    one of them was edited (UsageError)."""
    changes = Changes(unit_dir)
    _remove(unit_dir, check_removable(unit_dir), changes)
    return changes


def _remove(unit_dir: Path, paths: list[Path], changes: Changes) -> None:
    for path in paths:
        text = _read_unit(path)  # again, at the point of action: only a file still tamer's, as written
        if text is None or not is_tamer_unit(text) or is_edited(text):
            continue
        try:
            path.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnitDirUnusable(
                f"cannot remove {path}: {exc.strerror or exc}; removed so far: "
                f"{', '.join(changes.removed) or 'none'}"
            ) from None
        changes.removed.append(path.name)
    # the enable links of what went (and only of that): they would point at nothing
    for link in _enable_links(unit_dir, set(changes.removed)):
        try:
            link.unlink()
        except FileNotFoundError:
            continue
        except OSError as exc:
            raise UnitDirUnusable(f"cannot remove {link}: {exc.strerror or exc}") from None
        changes.links_removed.append(str(link.relative_to(unit_dir)))


def _enable_links(unit_dir: Path, names: set[str]) -> list[Path]:
    """Symlinks DIR/*.wants/NAME (or .requires) for NAME in `names` that point at DIR/NAME."""
    links: list[Path] = []
    try:
        entries = sorted(os.listdir(unit_dir))
    except OSError:
        return links
    real_dir = os.path.realpath(unit_dir)
    for entry in entries:
        sub = unit_dir / entry
        if not (entry.endswith(".wants") or entry.endswith(".requires")) or not sub.is_dir():
            continue
        for name in sorted(names):
            link = sub / name
            if not link.is_symlink():
                continue
            target = os.readlink(link)
            where = os.path.normpath(os.path.join(os.path.realpath(sub), target))
            if where == os.path.join(real_dir, name) or target == str(unit_dir / name):
                links.append(link)
    return links


def _remove_stale_temporaries(folder: Path) -> None:
    """The temporaries of earlier installs killed before their rename (their process is gone): they
    would otherwise stay in /etc/systemd/system for ever."""
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            if not (name.startswith(f".{UNIT_PREFIX}") and name.endswith(".tmp") and ".tamer-" in name):
                continue
            pid = name[: -len(".tmp")].rpartition(".tamer-")[2]
            if not pid.isdigit() or int(pid) == os.getpid() or _alive(int(pid)):
                continue
            with contextlib.suppress(OSError):
                os.unlink(folder / name)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # someone else's process: it exists
    return True


def _write_atomically(path: Path, text: str) -> None:
    _remove_stale_temporaries(path.parent)
    tmp = path.with_name(f".{path.name}.tamer-{os.getpid()}.tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
    try:
        os.fchmod(fd, 0o644)  # whatever the umask: systemd and the user read it
        data = text.encode("utf-8")
        written = 0
        while written < len(data):  # os.write may write less than asked
            written += os.write(fd, data[written:])
        os.fsync(fd)
        os.close(fd)
        fd = -1
        os.replace(tmp, path)
    except BaseException:
        if fd >= 0:
            os.close(fd)
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
