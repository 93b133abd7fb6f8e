"""`volume backup -o` naming something that is not a new file: refused before any data is read, with a
message that says what is there (a dangling symlink read as "appeared while the backup ran" after the whole
backup was written; a folder with --force was an internal error, IsADirectoryError, after the same)."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def _fresh(eng: Any) -> None:
    eng.docker("volume", "create", "s8_out")
    eng.docker("run", "--rm", "-v", "s8_out:/d", "tamer-test/busybox:1", "sh", "-c", "echo x > /d/f")


def test_a_dangling_symlink_is_an_existing_name(eng: Any, tmp_path: Path) -> None:
    _fresh(eng)
    out = tmp_path / "b.tar.zst"
    out.symlink_to(tmp_path / "nowhere")
    r = eng.tamer("--json", "volume", "backup", "s8_out", "-o", str(out))
    assert r.returncode == 2, r.stdout + r.stderr
    error = json.loads(r.stdout)["errors"][0]
    assert "already exists (a symlink)" in error, error
    assert sorted(os.listdir(tmp_path)) == ["b.tar.zst"] and not (tmp_path / "nowhere").exists()


def test_a_folder_is_refused_even_with_force(eng: Any, tmp_path: Path) -> None:
    _fresh(eng)
    out = tmp_path / "backups"
    out.mkdir()
    for extra in ([], ["--force"]):
        r = eng.tamer("--json", "volume", "backup", "s8_out", "-o", str(out), *extra)
        assert r.returncode == 2, r.stdout + r.stderr
        error = json.loads(r.stdout)["errors"][0]
        assert "is a folder; expected the path of a new backup file" in error, error
    assert os.listdir(out) == [] and sorted(os.listdir(tmp_path)) == ["backups"]
