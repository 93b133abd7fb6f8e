"""Copy a volume's data folder faithfully and prove the copy: used by move and adopt.

The copy is GNU `cp -a --sparse=always` (owners, modes, times, xattrs, hard
links, sparse files), run with an argument list, never a shell. The proof is
a second walk comparing both trees entry by entry: type, mode, owner, times,
size, sha256 of every file, link targets, xattrs, hard-link groups.
"""

from __future__ import annotations

import contextlib
import ctypes
import errno
import hashlib
import os
import shutil
import signal
import stat
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from tamer.errors import NotEnoughSpace, TamerError

CHUNK = 1 << 20
PR_SET_PDEATHSIG = 1


@dataclass(frozen=True)
class TreeSize:
    entries: int
    files: int
    bytes: int  # apparent size of regular files
    allocated: int  # bytes actually on disk (sparse files count what they use)


def measure(root: Path) -> TreeSize:
    """Count what a copy of `root` needs."""
    entries = files = size = allocated = 0
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            st = os.lstat(os.path.join(dirpath, name))
            entries += 1
            allocated += st.st_blocks * 512
            if stat.S_ISREG(st.st_mode):
                files += 1
                size += st.st_size
    return TreeSize(entries, files, size, allocated)


def clear_folder(path: Path) -> None:
    """Remove everything inside `path`, keeping the folder itself."""
    for entry in os.scandir(path):
        if entry.is_dir(follow_symlinks=False):
            shutil.rmtree(entry.path)
        else:
            os.unlink(entry.path)


def copy_tree(
    src: Path, dst: Path, *, on_started: Callable[[subprocess.Popen[bytes]], None] | None = None
) -> None:
    """Copy the contents of `src` into the existing folder `dst` with `cp -a --sparse=always`.

    Raises NotEnoughSpace when the destination fills up, TamerError for other
    failures; the partial copy is left for the caller to clear.
    `on_started(proc)` lets tests interrupt a copy in progress.
    """
    proc = subprocess.Popen(
        ["cp", "-a", "--sparse=always", "--", f"{src}/.", str(dst)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        preexec_fn=_die_with_parent,
    )
    if on_started is not None:
        on_started(proc)
    _, err = proc.communicate()
    if proc.returncode != 0:
        text = err.decode(errors="replace").strip()
        if "No space left" in text or "Disk quota" in text:
            raise NotEnoughSpace(
                f"{dst} filled up while copying ({text.splitlines()[-1]}); expected room for the "
                "whole volume; free space there or pick a bigger drive"
            )
        raise TamerError(
            f"copying {src} to {dst} failed: {text[-500:]}; expected a readable source and a "
            "writable destination"
        )


def _die_with_parent() -> None:
    """In the cp child: be killed when tamer dies (kill -9 included), so no orphaned copy keeps writing
    into a folder that a rerun or a rollback is clearing."""
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def _xattrs(path: str) -> dict[str, bytes]:
    try:
        return {
            n: os.getxattr(path, n, follow_symlinks=False) for n in os.listxattr(path, follow_symlinks=False)
        }
    except OSError as exc:
        if exc.errno in (errno.ENOTSUP, errno.EPERM):
            return {}
        raise


def _sha(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb", buffering=0) as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return h.hexdigest()


def verify_copy(src: Path, dst: Path) -> TreeSize:
    """Prove `dst` is a faithful copy of `src`; raise TamerError naming the first difference."""

    def fail(rel: str, what: str) -> TamerError:
        return TamerError(
            f"verifying the copy failed at {rel or '.'}: {what}; the source is untouched; rerun to copy again"
        )

    src_links: dict[int, str] = {}
    dst_links: dict[int, str] = {}
    entries = files = size = allocated = 0
    dst_count = sum(len(d) + len(f) for _, d, f in os.walk(dst))
    for dirpath, dirnames, filenames in os.walk(src):
        for name in dirnames + filenames:
            s_path = os.path.join(dirpath, name)
            rel = os.path.relpath(s_path, src)
            d_path = os.path.join(dst, rel)
            s = os.lstat(s_path)
            try:
                d = os.lstat(d_path)
            except FileNotFoundError:
                raise fail(rel, "missing in the copy") from None
            entries += 1
            allocated += s.st_blocks * 512
            if (s.st_mode, s.st_uid, s.st_gid) != (d.st_mode, d.st_uid, d.st_gid):
                raise fail(
                    rel,
                    f"mode/owner {oct(s.st_mode)} {s.st_uid}:{s.st_gid} became "
                    f"{oct(d.st_mode)} {d.st_uid}:{d.st_gid}",
                )
            if not stat.S_ISLNK(s.st_mode) and s.st_mtime_ns != d.st_mtime_ns:
                raise fail(rel, "modification time differs")
            if _xattrs(s_path) != _xattrs(d_path):
                raise fail(rel, "extended attributes differ")
            if stat.S_ISLNK(s.st_mode):
                if os.readlink(s_path) != os.readlink(d_path):
                    raise fail(rel, "link target differs")
            elif stat.S_ISREG(s.st_mode):
                files += 1
                size += s.st_size
                if s.st_size != d.st_size:
                    raise fail(rel, f"size {s.st_size} became {d.st_size}")
                if s.st_nlink > 1:
                    first_s = src_links.setdefault(s.st_ino, rel)
                    first_d = dst_links.setdefault(d.st_ino, rel)
                    if first_s != first_d:
                        raise fail(rel, "hard link not kept")
                if _sha(s_path) != _sha(d_path):
                    raise fail(rel, "content (sha256) differs")
    if dst_count != entries:
        raise fail("", f"the copy holds {dst_count} entries, the source {entries}")
    return TreeSize(entries, files, size, allocated)


def kill_copy_midway(proc: subprocess.Popen[bytes], dst: Path) -> None:
    """Test hook: wait until the copy has started writing, then kill it as a crash would."""
    deadline = time.monotonic() + 10
    while proc.poll() is None and time.monotonic() < deadline and not any(os.scandir(dst)):
        time.sleep(0.005)
    if proc.poll() is None:
        proc.send_signal(signal.SIGKILL)
