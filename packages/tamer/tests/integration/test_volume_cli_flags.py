"""The CLI flags of `volume backup` / `volume restore` reach the library: --writer, --privileged, --allow-tmpfs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest


def _mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


@pytest.fixture
def setuid_volume(eng: Any) -> str:
    eng.docker("volume", "create", "flags-src")
    root = _mountpoint(eng, "flags-src")
    (root / "tool").write_bytes(b"#!/bin/sh\n")
    os.chmod(root / "tool", 0o4755)
    (root / "plain").write_text("data\n")
    return "flags-src"


@pytest.mark.parametrize("writer", ["python", "tar", "compiled"])
def test_setid_bits_come_back_only_with_privileged(
    eng: Any, setuid_volume: str, tmp_path: Path, writer: str
) -> None:
    arc = tmp_path / "b.tar.zst"
    r = eng.tamer("volume", "backup", setuid_volume, "-o", str(arc), "--writer", writer, "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    r = eng.tamer("volume", "restore", str(arc), "flags-plain", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stat.S_IMODE((_mountpoint(eng, "flags-plain") / "tool").stat().st_mode) == 0o755
    r = eng.tamer("volume", "restore", str(arc), "flags-priv", "--privileged", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert stat.S_IMODE((_mountpoint(eng, "flags-priv") / "tool").stat().st_mode) == 0o4755
    assert (_mountpoint(eng, "flags-priv") / "plain").read_text() == "data\n"


def test_unknown_writer_is_a_usage_error(eng: Any, setuid_volume: str, tmp_path: Path) -> None:
    r = eng.tamer(
        "volume", "backup", setuid_volume, "-o", str(tmp_path / "x.tar.zst"), "--writer", "cpio", "--json"
    )
    assert r.returncode == 2
    assert json.loads(r.stdout)["status"] == "usage"
    assert not (tmp_path / "x.tar.zst").exists()


@pytest.fixture
def tmpfs_dir(tmp_path: Path) -> Iterator[Path]:
    d = tmp_path / "ram"
    d.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(d)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here (needs root)")
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)])


def test_restore_at_tmpfs_needs_allow_tmpfs(
    eng: Any, setuid_volume: str, tmp_path: Path, tmpfs_dir: Path
) -> None:
    arc = tmp_path / "b.tar.zst"
    assert eng.tamer("volume", "backup", setuid_volume, "-o", str(arc)).returncode == 0
    at = tmpfs_dir / "copy"
    r = eng.tamer("volume", "restore", str(arc), "flags-ram", "--at", str(at))
    assert r.returncode != 0
    assert "tmpfs" in (r.stdout + r.stderr)
    assert "flags-ram" not in eng.docker("volume", "ls", "-q").split()
    r = eng.tamer("volume", "restore", str(arc), "flags-ram", "--at", str(at), "--allow-tmpfs")
    assert r.returncode == 0, r.stdout + r.stderr
    assert (at / "plain").read_text() == "data\n"
