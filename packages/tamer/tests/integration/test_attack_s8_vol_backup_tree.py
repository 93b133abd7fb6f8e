"""tamer's own archive writer (`--writer python`, and `auto` where GNU tar is missing) against trees a
running container can shape: paths past PATH_MAX, and a folder swapped for a link to the host's files
between being listed and being read. Nothing outside the volume may end up in the archive."""

from __future__ import annotations

import io
import os
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from tamer.volumes import archive_write
from tamer.volumes.archive import DATA
from tamer.volumes.archive_write import write_archive
from tamer.volumes.restore import restore_into


def _members(archive: Path) -> dict[str, bytes]:
    raw = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(archive.read_bytes())).read()
    out: dict[str, bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", ignore_zeros=True) as tar:
        for m in tar:
            f = tar.extractfile(m) if m.isfile() else None
            out[m.name] = f.read() if f else b""
    return out


def _backup(root: Path, archive: Path, writer: str = "python") -> archive_write.WriteStats:
    with open(archive, "wb") as out:
        stats, _, _ = write_archive(str(root), out, {"volume": "v"}, writer=writer)
    return stats


@pytest.mark.parametrize("writer", ["python", "compiled"])  # the swap attack on compiled: test_s9_pack_equal
def test_paths_past_path_max_round_trip(tmp_path: Path, writer: str) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(24):  # 24 x 251 bytes: about 6 kB, past PATH_MAX (4096)
        os.mkdir("d" * 250, dir_fd=fd)
        nfd = os.open("d" * 250, os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    leaf = os.open("deep", os.O_WRONLY | os.O_CREAT, 0o640, dir_fd=fd)
    os.write(leaf, b"at the bottom")
    os.close(leaf)
    os.close(fd)
    archive = tmp_path / "b.tar.zst"
    stats = _backup(root, archive, writer)  # an internal error (ENAMETOOLONG) before
    assert stats.files == 1 and stats.entries == 25
    deep = "/".join([DATA] + ["d" * 250] * 24 + ["deep"])
    assert _members(archive)[deep] == b"at the bottom"
    target = tmp_path / "restored"
    target.mkdir()
    done = restore_into(str(archive), str(target))
    assert done.read.files == 1


def test_a_folder_swapped_for_a_link_mid_backup_brings_in_nothing_from_outside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "shadow").write_text("root:SECRET-HASH")
    root = tmp_path / "vol"
    (root / "b_dir").mkdir(parents=True)
    (root / "b_dir" / "mine").write_text("volume data")
    os.symlink("b_dir/mine", root / "c_link")
    # the writer lists the root (b_dir is a folder then), reads c_link's target, then descends into b_dir:
    # a container that swaps b_dir for a link to the host's folder in between, as the writer reads c_link
    real_readlink = os.readlink
    swapped: list[bool] = []

    def readlink_then_swap(path: Any, *args: Any, **kwargs: Any) -> Any:
        target = real_readlink(path, *args, **kwargs)
        if not swapped:
            swapped.append(True)
            os.rename(root / "b_dir", root / "b_dir.away")
            os.symlink(host, root / "b_dir")
        return target

    monkeypatch.setattr(os, "readlink", readlink_then_swap)
    archive = tmp_path / "b.tar.zst"
    stats = _backup(root, archive)
    monkeypatch.undo()
    assert swapped
    members = _members(archive)
    assert not any(b"SECRET" in data for data in members.values()), sorted(members)
    assert f"{DATA}/b_dir/shadow" not in members
    assert any(w.startswith("b_dir: left out") for w in stats.warnings), stats.warnings
