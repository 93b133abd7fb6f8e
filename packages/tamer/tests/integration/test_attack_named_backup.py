"""Attack: named volumes that a [[volumes.named]] rule selects but that are awkward to back up.

- a 240-byte name: the backup's file name (name + time) passed the 255-byte limit, and the OSError
  crashed the clean mid-run, so every later `clean --apply` resumed the run and crashed again;
- a volume holding a unix socket (a database's socket folder): tar cannot archive it, the proof fails,
  and each run left one more unproven full-size archive in the state folder (until the disk is full);
- two runs in one second gave the backup the same file name, so the second failed spuriously.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

POLICY = '[images]\nkeep_tags = ["tamer-test/*"]\n[[volumes.named]]\nnames = ["{pattern}"]\n'


def _clean(eng: Any, state: Path, policy: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "tamer", "clean", "--policy", str(policy), "--apply", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )


def _mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


def test_a_long_volume_name_is_backed_up_and_removed(eng: Any, tmp_path: Path) -> None:
    name = "long" + "x" * 236
    eng.docker("volume", "create", name)
    (_mountpoint(eng, name) / "f").write_text("kept in the backup")
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(pattern="longx*"))
    state = tmp_path / "state"
    proc = _clean(eng, state, policy)
    assert proc.returncode == 0 and "internal error" not in proc.stderr, proc
    assert name not in eng.docker("volume", "ls", "-q").split()
    archives = list((state / "backups").glob("*.tar.zst"))
    assert len(archives) == 1 and len(archives[0].name.encode()) <= 255


def test_an_unprovable_volume_stays_and_leaves_no_archive_behind(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "sock-db")
    data = _mountpoint(eng, "sock-db")
    (data / "table").write_text("rows")
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(str(data / "db.sock"))
    try:
        policy = tmp_path / "p.toml"
        policy.write_text(POLICY.format(pattern="sock-*"))
        state = tmp_path / "state"
        for _ in range(3):  # three runs within a second or two: same-second names too
            proc = _clean(eng, state, policy)
            assert proc.returncode == 3 and "internal error" not in proc.stderr, proc
            assert "already exists" not in proc.stdout, proc.stdout
            assert "sock-db" in eng.docker("volume", "ls", "-q").split()
            assert (data / "table").read_text() == "rows"
        assert list((state / "backups").iterdir()) == [], "unproven archives pile up in the state folder"
    finally:
        listener.close()


def test_a_backup_that_the_removal_would_delete_is_refused(eng: Any, tmp_path: Path) -> None:
    """TAMER_STATE_DIR inside the very volume a rule removes: the backup was written into the folder it was
    copying (changing the data, a full-size archive each run) and, had the proof passed, removing the volume
    would have deleted its only backup. Refused up front, nothing written into the volume."""
    eng.docker("volume", "create", "home-vol")
    data = _mountpoint(eng, "home-vol")
    (data / "notes").write_text("mine\n")
    state = data / ".local-state"
    policy = tmp_path / "p.toml"
    policy.write_text(POLICY.format(pattern="home-*"))
    state.mkdir()
    proc = _clean(eng, state, policy)
    assert proc.returncode == 3 and "internal error" not in proc.stderr, proc
    assert "home-vol" in eng.docker("volume", "ls", "-q").split()
    assert (data / "notes").read_text() == "mine\n" and not (state / "backups").exists()
