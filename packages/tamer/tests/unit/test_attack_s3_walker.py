"""Hostile trees against this session's walkers (C and Python), as a user without root's powers
would meet them: a folder that can be listed but not searched (mode 644: its names read, none of
them stat'able) must not end the whole walk; what it holds is counted as unreadable, like du, which
says so and goes on. Both walkers, the pool and the serial path, and du agree."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

WALK = """
import json, sys
import tamer.sizes as S
S.MIN_TASKS_FOR_POOL = int(sys.argv[2])
u = S.measure_tree(sys.argv[1], workers=2)
print(json.dumps(None if u is None else [u.apparent, u.allocated, u.files, u.vanished, u.unreadable]))
"""


def _powerless(*cmd: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=60,
    )


@pytest.fixture
def hostile_tree(tmp_path: Path) -> Path:
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root and setpriv to build a tree a powerless walker cannot fully read")
    root = tmp_path / "tree"
    (root / "a" / "b").mkdir(parents=True)
    (root / "a" / "b" / "f").write_bytes(b"x" * 50_000)
    nosearch = root / "x" / "listable-not-searchable"  # grandchild: walked by a task of round 2
    (nosearch / "sub").mkdir(parents=True)
    (nosearch / "f").write_bytes(b"y" * 9_000)
    (nosearch / "g").write_bytes(b"y" * 9_000)
    top_nosearch = root / "top-nosearch"  # child: walked in round 1's split
    top_nosearch.mkdir()
    (top_nosearch / "f").write_bytes(b"z" * 7_000)
    (root / "locked" / "in").mkdir(parents=True)
    (root / "locked" / "in" / "f").write_bytes(b"l" * 5_000)
    for i in range(70):  # enough folders for the pool
        (root / "many" / str(i)).mkdir(parents=True)
        (root / "many" / str(i) / "f").write_bytes(b"m" * i)
    for folder in (tmp_path, *root.rglob("*")):
        folder.chmod(0o755 if folder.is_dir() else 0o644)
    root.chmod(0o755)
    nosearch.chmod(0o644)
    top_nosearch.chmod(0o644)
    (root / "locked").chmod(0)
    return root


def test_a_listable_but_unsearchable_folder_is_unreadable_not_a_crash(hostile_tree: Path) -> None:
    results = {}
    for pure in ("", "1"):
        for pool_from in ("1000000", "1"):
            proc = _powerless(
                sys.executable, "-c", WALK, str(hostile_tree), pool_from, env={"TAMER_PURE_WALK": pure}
            )
            assert proc.returncode == 0, proc.stderr[-2000:]
            results[(pure, pool_from)] = json.loads(proc.stdout)
    first = next(iter(results.values()))
    assert all(r == first for r in results.values()), results
    apparent, allocated, files, vanished, unreadable = first
    # locked (cannot be opened) and each folder whose entries cannot be stat'ed: 3 at least
    assert unreadable >= 3 and vanished == 0
    assert apparent == 50_000 + sum(range(70))  # only what could be stat'ed
    assert files == 1 + 70
    du = _powerless("du", "-sxB1", str(hostile_tree))  # exits 1: it met what it could not read
    assert "Permission denied" in du.stderr
    assert allocated == int(du.stdout.split()[0]), (allocated, du.stdout)
