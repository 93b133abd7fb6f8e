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


def shown(text: str) -> str:
    """`text` for a terminal: control characters and bidi overrides in each line shown as '?' (line breaks and
    tabs kept). Errors and warnings quote what anyone could name (an archive's entries and header, a
    volume's files, labels): an ESC sequence there would recolour or rewrite the terminal, a CR or newline
    forge a line. --json carries the text exactly (JSON escapes it)."""
    lines = text.split("\n")
    if all(line.replace("\t", " ").isprintable() for line in lines):
        return text
    from tamer.report.table import safe_cell

    return "\n".join("\t".join(safe_cell(part) for part in line.split("\t")) for line in lines)


def write_message(stream: TextIO, text: str) -> None:
    """write() of an error or warning line for people (shown())."""
    write(stream, shown(text))


def discard(stream: TextIO) -> None:
    # what is still buffered would fail again when Python flushes at exit
    try:
        fd = stream.fileno()
    except (OSError, ValueError):
        return
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, fd)
    os.close(devnull)
