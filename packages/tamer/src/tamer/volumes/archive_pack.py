"""The compiled archive writer (tamer._cpack) as the backup's writer: choosing it, and driving it into the compressor.

tamer._cpack reads the volume's files in this process, straight into the pieces that go to the
compressor, hashes them there (BLAKE3 in C) and builds their headers: no GNU tar process, no pipe, no
parsing of tar's stream (archive_tar.py). Its stream is the pure-Python writer's (archive_write: _scan
and emit_batch are the reference), byte for byte, and so is the manifest it leads to; a test compares
them on hostile trees.

Which writer `auto` means (archive_write.write_archive): this one when it was built with its own BLAKE3,
the archive's digest is BLAKE3 and TAMER_PURE_PACK does not force the reference (tamer.compiled's rule:
unset, empty or "0" lets it load); else GNU tar; else the pure-Python writer. A sha256 (format-1)
archive never uses it.
"""

from __future__ import annotations

import base64
import errno
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from tamer.compiled import load, native_blake3
from tamer.errors import TamerError
from tamer.volumes.archive import DATA
from tamer.volumes.archive import _header as _header  # the tests wrap it (a hook between open and read)

if TYPE_CHECKING:
    from types import ModuleType

    from tamer.volumes.archive_write import WriteStats

SWITCH = "TAMER_PURE_PACK"


def packer_module(writer: str, digest: str) -> ModuleType | None:
    """tamer._cpack when `writer` ("auto" or "compiled"; any other gives None) and `digest` call for it.

    "auto": the module when it was built with its own BLAKE3, `digest` is "blake3" and the TAMER_PURE_PACK
    switch does not force the reference; else None (GNU tar or Python then write). "compiled": the module
    whatever the switch says (it was asked for by name), or TamerError when it cannot write this archive.

    Example:
        >>> packer_module("python", "blake3") is None
        True
    """
    if writer not in ("auto", "compiled") or (writer == "auto" and digest != "blake3"):
        return None
    native = load("tamer._cpack", SWITCH if writer == "auto" else None)
    usable = native is not None and native_blake3(native)
    if writer == "compiled":
        if digest != "blake3":
            raise TamerError(
                f"the compiled archive writer writes BLAKE3 archives only, and this one's digest is {digest}; "
                "expected the blake3 digest (the default); use --writer tar or python for a sha256 archive"
            )
        if not usable:
            raise TamerError(
                "the compiled archive writer was asked for but is not built here (tamer._cpack, built with "
                "its own BLAKE3, needs a C compiler when tamer is installed); expected it built; reinstall "
                "tamer with a C compiler at hand, or use --writer tar or python"
            )
    return native if usable else None


def pack_into(
    native: ModuleType,
    root: str,
    write: Callable[[Any], Any],
    stats: WriteStats,
    files: dict[str, Any],
    xattrs: dict[str, dict[str, str]],
) -> None:
    """Write the data part of the archive of the folder `root` (its own header, `data`, and everything
    below it) to `write`, a piece of about 1 MiB at a time, as the pure-Python writer would.

    `write` must use or copy each piece before it returns (the Packer reuses its buffer). Fills `files`
    (rel -> [size, BLAKE3 hex]) and `xattrs` (rel -> {name: base64}) in stream order and adds to `stats`.
    Raises OSError where the Python writer would (an unreadable file), TamerError when the tree is too
    deep for the open-file limit.
    """
    raw: dict[str, dict[str, bytes]] = {}
    packer = native.Packer(root, DATA.encode(), _header, files, raw, stats.warnings)
    try:
        while packer.fill():
            write(packer)
    except OSError as exc:
        if exc.errno == errno.EMFILE:
            where = str(exc.filename)
            where = where if len(where) <= 200 else "..." + where[-200:]
            raise TamerError(
                f"reading the volume folder {root} ran out of open files at {where}: a folder stays "
                "open while its subfolders wait, one per level of the tree; expected a tree this deep to fit "
                "the open-file limit; raise it (ulimit -n) and run this again"
            ) from exc
        raise
    finally:
        packer.close()
        stats.entries += packer.entries
        stats.files += packer.files
        stats.bytes += packer.bytes
    for rel, values in raw.items():
        xattrs[rel] = {name: base64.b64encode(value).decode() for name, value in values.items()}
