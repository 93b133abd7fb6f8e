"""The pure-Python archive writer under a running user's changes, as the compiled writer handles them.

A container with CAP_MKNOD can put a device node where a file was listed: the writer must never read it
(a disk of the host is not volume data). A symlink replaced between its listing and its readlink is left
out with a warning, not a failed backup.
"""

from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Any

import pytest
from tamer.volumes import archive_write
from tamer.volumes.archive import read_archive


def test_a_device_node_in_a_listed_file_s_place_is_never_opened_for_reading() -> None:
    assert stat.S_ISCHR(os.stat("/dev/zero").st_mode)
    assert archive_write._open_listed("/dev/zero") is None
    data, real = archive_write._read_file("/dev/zero", 4096)
    assert real == 0 and data == bytes(4096)


def test_a_fifo_in_a_listed_file_s_place_is_never_read(tmp_path: Path) -> None:
    fifo = tmp_path / "f"
    os.mkfifo(fifo)
    assert archive_write._open_listed(str(fifo)) is None


def test_a_regular_file_is_still_read(tmp_path: Path) -> None:
    f = tmp_path / "a"
    f.write_bytes(b"hello")
    assert archive_write._read_file(str(f), 5) == (b"hello", 5)


@pytest.mark.parametrize("err", [errno.EINVAL, errno.ENOENT])
def test_a_link_replaced_or_removed_before_its_readlink_is_left_out_not_a_failed_backup(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, err: int
) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    (root / "kept").write_bytes(b"data")
    os.symlink("kept", root / "link")
    real_readlink = os.readlink

    def replaced(path: Any, *args: Any, **kwargs: Any) -> str:
        if str(path).endswith("/link"):  # what a running user's rename over the link looks like here
            raise OSError(err, os.strerror(err), str(path))
        return real_readlink(path, *args, **kwargs)

    monkeypatch.setattr(archive_write.os, "readlink", replaced)
    archive = tmp_path / "a.tar.zst"
    with archive.open("wb") as out:
        stats, _, _ = archive_write.write_archive(str(root), out, {"volume": "v"}, writer="python")
    assert stats.entries == 1  # `kept` only
    left_out = [w for w in stats.warnings if w.startswith("link: left out")]
    assert len(left_out) == (1 if err == errno.EINVAL else 0), stats.warnings
    assert read_archive(str(archive)).files == 1  # a whole archive, every checksum right
