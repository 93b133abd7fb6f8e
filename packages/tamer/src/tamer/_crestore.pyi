# tamer/_crestore.c: the plain-file part of restore and verify in C (optional; see tamer.volumes.archive)
from collections.abc import Callable
from typing import Any

def extract(
    buf: bytes,
    pos: int,
    dirfd: int,
    parent: bytes,
    kinds: dict[str, str],
    room: int,
    uid: int,
    gid: int,
    factory: Callable[[Any], Any],
    /,
) -> tuple[int, int, list[tuple[str, int, str]]]: ...
