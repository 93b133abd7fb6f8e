"""Attack: a named volume holding an immutable file (`chattr +i`), selected by a [[volumes.named]] rule.

The engine deletes a volume's files one by one and stops at the immutable one: the volume stays, half
deleted. The step said only "the engine refused" (as if nothing had happened) and did not say where the
backup it had just made was. It must say that part of the data may be gone and how to get it back.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

POLICY = '[images]\nkeep_tags = ["tamer-test/*"]\n[[volumes.named]]\nnames = ["imm-*"]\n'


def test_a_removal_that_fails_midway_says_so_and_names_the_backup(eng: Any, tmp_path: Path) -> None:
    if shutil.which("chattr") is None:
        pytest.skip("chattr is not installed")
    eng.docker("volume", "create", "imm-db")
    data = Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "imm-db").strip())
    for sub in ("a", "z"):
        (data / sub).mkdir()
        (data / sub / "rows").write_text(f"rows of {sub}\n")
    locked = data / "m-locked"
    locked.write_text("locked\n")
    if subprocess.run(["chattr", "+i", str(locked)], capture_output=True).returncode != 0:
        pytest.skip("this filesystem has no immutable attribute")
    try:
        policy = tmp_path / "p.toml"
        policy.write_text(POLICY)
        env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path / "state")}
        proc = subprocess.run(
            [sys.executable, "-m", "tamer", "clean", "--policy", str(policy), "--apply", "--yes", "--json"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert proc.returncode == 3, proc
        step = next(s for s in json.loads(proc.stdout)["data"]["steps"] if s["id"] == "imm-db")
        assert step["status"] == "failed" and step["code"] == "removal-failed-midway", step
        archive = Path(step["facts"]["archive"])
        assert archive.is_file()
        assert str(archive) in step["detail"] and "may be gone" in step["detail"], step
        # the backup brings every file back, those the engine deleted included
        restored = subprocess.run(
            [sys.executable, "-m", "tamer", "volume", "restore", str(archive), "imm-back"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
        assert restored.returncode == 0, restored
        back = Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "imm-back").strip())
        assert (
            (back / "a" / "rows").read_text() == "rows of a\n"
            and (back / "z" / "rows").read_text() == "rows of z\n"
            and (back / "m-locked").read_text() == "locked\n"
        )
    finally:
        subprocess.run(["chattr", "-i", str(locked)], capture_output=True)
