"""Hostile places for a volume's data (`volume create|restore --at`): kernel filesystems that store nothing,
and folders that cannot be made. Each is a clear error (exit 2), no volume, and no folder left behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest


def _pseudo_places() -> list[str]:
    """Folders on kernel filesystems this host has (proc is always there; sysfs and devpts usually)."""
    places = ["/proc/tamer-s8-vol"]
    for base in ("/sys/kernel", "/dev/pts"):
        if os.path.isdir(base):
            places.append(f"{base}/tamer-s8-vol")
    return places


@pytest.mark.parametrize("command", ["create", "restore"])
def test_a_kernel_filesystem_is_no_place_for_volume_data(eng: Any, tmp_path: Path, command: str) -> None:
    archive = tmp_path / "b.tar.zst"
    if command == "restore":
        eng.docker("volume", "create", "s8_src")
        r = eng.tamer("volume", "backup", "s8_src", "-o", str(archive))
        assert r.returncode == 0, r.stderr
    before = eng.docker("volume", "ls", "-q").split()
    for at in _pseudo_places():
        args = ["volume", "create", "s8_pseudo", "--at", at]
        if command == "restore":
            args = ["volume", "restore", str(archive), "s8_pseudo", "--at", at]
        r = eng.tamer("--json", *args)
        assert r.returncode == 2, (at, r.stdout, r.stderr)
        error = json.loads(r.stdout)["errors"][0]
        assert "kernel" in error and "expected a folder on a disk" in error, error
        assert "internal error" not in r.stderr
        assert not os.path.lexists(at)
        assert eng.docker("volume", "ls", "-q").split() == before


def test_a_folder_that_cannot_be_made_is_a_clear_error_and_leaves_no_parent(eng: Any, tmp_path: Path) -> None:
    # every check before passes (the parent exists and is writable); the kernel refuses the 300-byte name
    at = tmp_path / "new" / "deeper" / ("x" * 300)
    before = eng.docker("volume", "ls", "-q").split()
    r = eng.tamer("--json", "volume", "create", "s8_long", "--at", str(at))
    assert r.returncode == 2, r.stdout + r.stderr
    error = json.loads(r.stdout)["errors"][0]
    assert "cannot be made" in error and "File name too long" in error and "nothing was changed" in error
    assert not (tmp_path / "new").exists()  # the folders made on the way are removed again
    assert eng.docker("volume", "ls", "-q").split() == before
