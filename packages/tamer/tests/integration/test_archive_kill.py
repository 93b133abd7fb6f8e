"""Leftovers of killed backups and restores (issue 10, "Also found"): a real kill -9 midway, and kills at the exact
points around the final moves; the next run cleans what the dead one left (never a live run's) and succeeds."""

from __future__ import annotations

import fcntl
import hashlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tamer.volumes.backup import backup_volume, verify_backup


def mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


def tree(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            st = p.lstat()
            out[str(p.relative_to(root))] = (
                st.st_mode,
                st.st_uid,
                int(st.st_mtime),
                hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else None,
            )
    return out


def fill(root: Path, files: int, size: int) -> None:
    for i in range(files):
        d = root / f"d{i // 100:02d}"
        d.mkdir(exist_ok=True)
        (d / f"f{i:05d}").write_bytes(os.urandom(size))


def kill_when(eng: Any, args: list[str], ready: Callable[[], bool], timeout: float = 60) -> None:
    """Start the CLI and SIGKILL it as soon as `ready()` holds (polled every millisecond)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "tamer", *args],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        env={**os.environ, "DOCKER_HOST": eng.host},
    )
    deadline = time.monotonic() + timeout
    try:
        while not ready():
            assert proc.poll() is None, (
                f"finished before the kill: {proc.stderr.read() if proc.stderr else ''}"
            )
            assert time.monotonic() < deadline, "never reached the point to kill at"
            time.sleep(0.001)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.wait()
    assert proc.returncode == -signal.SIGKILL


def test_backup_killed_midway_leaves_a_partial_the_next_run_removes(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "ak_src")
    root = mountpoint(eng, "ak_src")
    (root / "big").write_bytes(os.urandom(160 << 20))
    out = tmp_path / "b.tar.zst"

    def partial_written() -> bool:
        return any(
            p.name.startswith(".b.tar.zst.tamer-") and p.stat().st_size > 1 << 20 for p in tmp_path.iterdir()
        )

    kill_when(eng, ["volume", "backup", "ak_src", "-o", str(out)], partial_written)
    partials = [p for p in tmp_path.iterdir() if p.name.startswith(".b.tar.zst.tamer-")]
    assert len(partials) == 1 and not out.exists()
    r = eng.tamer("volume", "backup", "ak_src", "-o", str(out))
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.tar.zst"], "the dead partial was removed"
    assert verify_backup(out).bytes == 160 << 20


def test_backup_killed_before_its_rename_and_a_live_partial_is_left_alone(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "ak_small")
    (mountpoint(eng, "ak_small") / "f").write_text("x")
    out = tmp_path / "s.tar.zst"
    r = eng.tamer("volume", "backup", "ak_small", "-o", str(out), fault="backup.write.after")
    assert r.returncode == 137 and not out.exists()
    live = tmp_path / ".s.tar.zst.tamer-1-live"  # another backup writing it now: it holds the lock on it
    live.write_bytes(b"partial")
    fd = os.open(live, os.O_RDONLY)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        backup_volume(eng.engine, "ak_small", out)
    finally:
        os.close(fd)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".s.tar.zst.tamer-1-live", "s.tar.zst"]
    assert live.read_bytes() == b"partial"


def test_restore_killed_midway_is_cleaned_by_the_next_run(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "ak_many")
    src = mountpoint(eng, "ak_many")
    fill(src, 1500, 48 << 10)
    arc = tmp_path / "m.tar.zst"
    backup_volume(eng.engine, "ak_many", arc)
    target = eng.data_root / "volumes" / "ak_back" / "_data"

    def staging_half_full() -> bool:
        try:
            staging = [p for p in target.iterdir() if p.name.startswith(".tamer-restore-")]
            return bool(staging) and len(list(staging[0].iterdir())) >= 3
        except FileNotFoundError:
            return False

    kill_when(eng, ["volume", "restore", str(arc), "ak_back"], staging_half_full)
    assert [p.name for p in target.iterdir() if p.name.startswith(".tamer-restore-")], "the kill left staging"
    r = eng.tamer("volume", "restore", str(arc), "ak_back")
    assert r.returncode == 0, r.stderr
    assert tree(target) == tree(src), "the retry restored exactly, with nothing of the dead run left"


def test_restore_killed_while_moving_into_place_is_undone_by_the_next_run(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "ak_top")
    src = mountpoint(eng, "ak_top")
    for name in ("a", "b", "c"):
        (src / name).mkdir()
        (src / name / "f").write_text(name)
    arc = tmp_path / "t.tar.zst"
    backup_volume(eng.engine, "ak_top", arc)
    r = eng.tamer("volume", "restore", str(arc), "ak_top2", fault="restore.move")
    assert r.returncode == 137
    target = mountpoint(eng, "ak_top2")
    assert "a" in os.listdir(target) and "c" not in os.listdir(target), "killed after moving one entry"
    r = eng.tamer("volume", "restore", str(arc), "ak_top2")
    assert r.returncode == 0, r.stderr
    assert tree(target) == tree(src)
