"""Attack: the state folder fills up or turns read-only, before and in the middle of a clean.

The journal is fine in both cases; the error must say what is wrong and how to
go on, never "internal error", and never advise moving the journal aside (that
throws away the orphan clock and the record of an unfinished clean).
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"
# fills the state disk right after the first removal, before it is journaled
FILLING = (
    "import subprocess, sys\nfrom tamer.operation import faults\nfrom tamer.cli import main\n"
    "ballast = sys.argv.pop(1)\n"
    "def fill(point, ctx):\n"
    "    if point == 'clean.0.after':\n"
    "        subprocess.run(['dd', 'if=/dev/zero', 'of=' + ballast, 'bs=4k'], capture_output=True)\n"
    "faults.install(fill)\nraise SystemExit(main(sys.argv[1:]))\n"
)


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=512k", "tmpfs", str(mnt)]).returncode != 0:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)])


def _tamer(eng: Any, state: Path, *args: str, script: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    cmd = [sys.executable, *(("-c", script) if script else ("-m", "tamer")), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _names(eng: Any) -> set[str]:
    return set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())


def test_a_full_disk_mid_clean_is_a_clear_error_and_the_rerun_finishes(eng: Any, small_disk: Path) -> None:
    state = small_disk / "state"
    for i in range(2):
        eng.docker("run", "--name", f"full-{i}", BUSYBOX, "true")
    ballast = small_disk / "ballast"
    stopped = _tamer(eng, state, str(ballast), "clean", "--apply", "--yes", script=FILLING)
    assert stopped.returncode == 1, stopped
    assert "internal error" not in stopped.stderr and "is full" in stopped.stderr, stopped.stderr
    assert "clean --apply` again" in stopped.stderr and "move it aside" not in stopped.stderr
    # one removed, not yet recorded; the removal running beside it (clean's container steps run side by
    # side) may have ended too, its record refused by the full disk: both are found gone by the rerun
    assert len({"full-0", "full-1"} & _names(eng)) <= 1
    # a journal connection open beside the filling (a step running beside the one that filled it) frees its
    # -wal/-shm files when it closes: fill that space again, so the disk is still full for the rerun
    subprocess.run(
        ["dd", "if=/dev/zero", f"of={ballast}", "bs=4k", "oflag=append", "conv=notrunc"], capture_output=True
    )
    still_full = _tamer(eng, state, "clean", "--apply", "--yes")
    assert still_full.returncode == 1 and "is full" in still_full.stderr, still_full
    assert "internal error" not in still_full.stderr and "move it aside" not in still_full.stderr
    ballast.unlink()
    finished = _tamer(eng, state, "clean", "--apply", "--yes")
    assert finished.returncode == 0, finished
    assert not {"full-0", "full-1"} & _names(eng)


def test_a_read_only_state_folder_blocks_no_preview_and_apply_says_why(eng: Any, small_disk: Path) -> None:
    state = small_disk / "state"
    eng.docker("run", "--name", "ro-state", BUSYBOX, "true")
    assert _tamer(eng, state, "plan").returncode == 0  # the journal exists
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    preview = _tamer(eng, state, "plan")
    assert preview.returncode == 0 and "ro-state" in preview.stdout, preview
    applied = _tamer(eng, state, "clean", "--apply", "--yes")
    assert applied.returncode == 1 and "read-only" in applied.stderr, applied
    assert "move it aside" not in applied.stderr and "internal error" not in applied.stderr
    assert "ro-state" in _names(eng)
