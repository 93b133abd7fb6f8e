"""A restore's staging folder: one restore per target at a time, and never anything replaced or half done.

tamer.volumes.restore writes everything into a staging folder inside the target (`.tamer-restore-*`), then
records what it is about to move (`.tamer-restore-*.moving`, synced) and moves each entry into place with a
rename that never replaces. This module holds those steps and their undoing: a flock on the target folder
keeps two restores apart and tells a killed run's leftovers from a live one's, and the next restore (or
`tamer volume restore`'s check before it starts) removes what a killed run left: its staging folder, and
the entries its `.moving` record says it had started moving into place.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import fcntl
import functools
import json
import os
import shutil
import stat

from tamer.errors import RestoreRefused

STAGING_PREFIX = ".tamer-restore-"
MOVING = ".moving"  # the suffix of the record of what a staging folder is moving into place
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def rename_noreplace(src_dir: int, name: str, dst_dir: int) -> None:
    """Move `name` between two folders, never replacing anything at the destination."""
    fn = getattr(_libc(), "renameat2", None)
    if fn is not None:
        raw = os.fsencode(name)
        if fn(src_dir, raw, dst_dir, raw, 1) == 0:  # RENAME_NOREPLACE
            return
        err = ctypes.get_errno()
        if err not in (errno.EINVAL, errno.ENOSYS):  # the filesystem cannot: fall back below
            raise OSError(err, os.strerror(err), name)
    try:
        os.lstat(name, dir_fd=dst_dir)
    except FileNotFoundError:
        os.rename(name, name, src_dir_fd=src_dir, dst_dir_fd=dst_dir)
        return
    raise FileExistsError(errno.EEXIST, "exists", name)


def lock_target(fd: int, what: str) -> None:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        raise RestoreRefused(
            f"another tamer restore is writing into {what} right now; expected one restore at a "
            "time per volume; wait for it to finish"
        ) from exc


def remove_entry(name: str, dir_fd: int) -> None:
    if stat.S_ISDIR(os.lstat(name, dir_fd=dir_fd).st_mode):
        shutil.rmtree(name, dir_fd=dir_fd)  # the fd-based rmtree: never follows a link
    else:
        os.unlink(name, dir_fd=dir_fd)


def _moved_by(name: str, root_fd: int) -> list[str]:
    """The entries a killed restore's `.moving` record says it had started moving into place."""
    try:
        fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC, dir_fd=root_fd)
    except OSError:
        return []
    try:
        raw = os.read(fd, 1 << 24)
    finally:
        os.close(fd)
    try:
        names = json.loads(raw).get("names", [])
    except (ValueError, AttributeError):
        return []
    return [n for n in names if isinstance(n, str) and n not in ("", ".", "..") and "/" not in n]


def leftovers(root: str) -> set[str]:
    """Names in the folder `root` that killed restores left (staging, records, entries half moved)."""
    fd = os.open(os.path.realpath(root), DIR_FLAGS)
    try:
        out = set()
        for name in os.listdir(fd):
            if name.startswith(STAGING_PREFIX):
                out.add(name)
                if name.endswith(MOVING):
                    out.update(_moved_by(name, fd))
        return out
    finally:
        os.close(fd)


def clean_leftovers(root_fd: int) -> list[str]:
    """Undo what killed restores left in the folder `root_fd`; the caller holds its lock, so no live restore
    owns any of it. A staging folder is removed; a `.moving` record (written before entries move from staging
    into place) names the entries already moved, which are removed too. Returns what was removed."""
    gone = []
    for name in sorted(os.listdir(root_fd)):
        if not name.startswith(STAGING_PREFIX):
            continue
        if name.endswith(MOVING):
            for entry in _moved_by(name, root_fd):
                with contextlib.suppress(FileNotFoundError):
                    remove_entry(entry, root_fd)
                    gone.append(entry)
        with contextlib.suppress(FileNotFoundError):
            remove_entry(name, root_fd)
            gone.append(name)
    return gone


def record_moving(root_fd: int, staging: str, names: list[str]) -> None:
    """Write (and sync) the record of the entries `staging` is about to move into place: a run killed while
    moving is undone by the next (clean_leftovers)."""
    fd = os.open(
        staging + MOVING,
        os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC,
        0o600,
        dir_fd=root_fd,
    )
    try:
        os.write(fd, json.dumps({"names": names}).encode())
        os.fsync(fd)
    finally:
        os.close(fd)
