"""Failure 5: sizes past the ustar field (8 GiB and more) are read from PAX records, by the reader and by the
backup writer's tap, for headers tamer writes and for headers GNU tar writes (real sparse files, no disk cost)."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
from pathlib import Path

import pytest
from tamer.volumes.archive import _TYPE_REG, _header, _members
from tamer.volumes.archive_write import WriteStats, _TarTap

GIB8 = 8 << 30
SIZES = [GIB8 - 1, GIB8, GIB8 + 1, 1 << 40]


def _tap_after(headers: bytes) -> _TarTap:
    tap = _TarTap(WriteStats(), {}, {})
    tap.feed(headers)
    return tap


@pytest.mark.parametrize("size", SIZES, ids=["8GiB-1", "8GiB", "8GiB+1", "1TiB"])
def test_our_header_round_trips_any_size(size: int) -> None:
    h = _header(b"data/big", 0o644, 0, 0, size, 1_700_000_000, _TYPE_REG)
    (m,) = list(_members(io.BytesIO(h)))
    assert (m.name, m.size, m.mode, m.mtime) == ("data/big", size, 0o644, 1_700_000_000)
    tap = _tap_after(h)
    assert (tap.mode, tap.left, tap.rel) == ("data", size, "big")


@pytest.mark.skipif(shutil.which("tar") is None, reason="GNU tar not installed")
@pytest.mark.parametrize("size", SIZES[:3], ids=["8GiB-1", "8GiB", "8GiB+1"])
def test_gnu_tar_headers_of_real_sparse_files(tmp_path: Path, size: int) -> None:
    """The very command the backup runs, on a real (sparse) file; only its first blocks are read."""
    with open(tmp_path / "big", "wb") as f:
        f.truncate(size)
    assert os.stat(tmp_path / "big").st_blocks == 0
    cmd = [
        "tar",
        "--create",
        "--file=-",
        "--blocking-factor=1",
        "--directory",
        str(tmp_path),
        "--format=posix",
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "--pax-option=delete=atime,delete=ctime,delete=mtime",
        r"--transform=s,^\.,data,S",
        "./big",
    ]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    assert proc.stdout is not None
    head = proc.stdout.read(8 * 512)
    proc.kill()
    proc.wait()
    members = _members(io.BytesIO(head))
    m = next(members)
    assert (m.name, m.size) == ("data/big", size)
    tap = _tap_after(head)
    assert (tap.mode, tap.rel) == ("data", "big")
    consumed = size - tap.left  # the data bytes of `head` after its header blocks
    assert consumed in (len(head) - 512, len(head) - 3 * 512), "the tap counts down from the file's real size"
