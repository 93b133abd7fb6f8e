"""Reading a file a user names (a policy, a plan, a compose file, tamer's own ledger) without trusting what it is.

A FIFO put in the file's place would block the open, and the command, forever; /dev/zero (or a symlink to
it) would be read until memory ran out. Every such read goes through read_regular.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path


class NotARegularFile(OSError):
    """The path is a FIFO, a device, a folder...: reading it could block forever or never end."""


def read_regular(path: Path | str, limit: int, *, follow_links: bool = True) -> bytes | None:
    """The bytes of a regular file, or None when it is longer than `limit`.

    Opened without blocking and checked on the open descriptor, so a FIFO or /dev/zero put in the
    file's place (or a symlink to one) is refused instead of hanging the command or filling memory.
    follow_links=False: a symlink at `path` itself is refused too (OSError ELOOP), for files only tamer
    writes. Read in pieces of at most 1 MiB: read(limit) would allocate the limit up front.
    Raises OSError (NotARegularFile for anything but a regular file).
    """
    flags = os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC | (0 if follow_links else os.O_NOFOLLOW)
    fd = os.open(path, flags)
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(errno.EINVAL, f"not a regular file (mode {stat.filemode(info.st_mode)})")
        if info.st_size > limit:
            return None
        chunks: list[bytes] = []
        size = 0
        while size <= limit:
            chunk = os.read(fd, min(1 << 20, limit + 1 - size))
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
            size += len(chunk)
        return None
    finally:
        os.close(fd)
