"""Writing to stdout and stderr, for tamer.cli.app and the lean path (tamer.cli.lean) alike."""

from __future__ import annotations

import os

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from typing import TextIO


def write(stream: TextIO, text: str) -> None:
    """Print, treating a reader that went away (`tamer ls | head`) as the end of output, not an error."""
    try:
        print(text, file=stream)
        stream.flush()
    except BrokenPipeError:
        discard(stream)


def discard(stream: TextIO) -> None:
    # what is still buffered would fail again when Python flushes at exit
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
