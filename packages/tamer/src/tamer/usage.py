"""DiskUsage: what a directory tree holds on disk (the figure every size in tamer is made of).

A module of its own so that the walker (tamer.sizes) can fork its workers and start a walk without
importing `dataclasses` (which imports `inspect`: some 8 ms of a warm `tamer df`, before its first walk
could start); tamer.sizes hands this class out under its old name too (`from tamer.sizes import DiskUsage`).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class DiskUsage:
    """What a directory tree holds on disk.

    apparent: bytes as docker counts them (file sizes, hard links once).
    allocated: bytes of blocks in use (like `du -sB1`), directories included.
    files: non-directory entries counted. vanished: entries that disappeared
    while being walked (skipped, not an error: containers come and go).
    unreadable: folders that could not be listed (no permission), or whose entries could not
    be stat'ed (a folder readable but not searchable, a mount point another user or a dead
    network mount holds; counted once per folder): their own blocks count, what could not be
    read does not, as with `du`; the figure is then a lower bound.
    """

    apparent: int = 0
    allocated: int = 0
    files: int = 0
    vanished: int = 0
    unreadable: int = 0

    def __add__(self, other: DiskUsage) -> DiskUsage:
        return DiskUsage(
            self.apparent + other.apparent,
            self.allocated + other.allocated,
            self.files + other.files,
            self.vanished + other.vanished,
            self.unreadable + other.unreadable,
        )
