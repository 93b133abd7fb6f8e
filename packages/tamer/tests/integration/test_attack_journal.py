"""Attack: the journal is a file too. An unfinished run planted in (or edited into) the state folder's
journal used to be "finished" by the next `clean --apply`, with whatever policy it recorded: a forged
plan that widens the clean (every named volume, no wait) ran with no seal at all, while the same plan
saved as a file is refused. A run's plan is sealed when it starts and checked before a resume.
"""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

from tamer.collect import read_raw_snapshot
from tamer.inventory import build_inventory
from tamer.journal import Journal
from tamer.plan import make_plan
from tamer.policy import load_policy

WIDE = '[images]\nkeep_tags = ["tamer-test/*"]\n[[volumes.named]]\nnames = ["*"]\nolder_than = "0s"\n'


def test_a_planted_unfinished_run_is_refused_not_finished(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "victim-db")
    eng.docker("run", "--rm", "-v", "victim-db:/d", "tamer-test/busybox:1", "sh", "-c", "echo rows > /d/t")
    state = tmp_path / "state"
    state.mkdir()
    inv = build_inventory(read_raw_snapshot(eng.engine))
    clock = {v.name: inv.taken_at.replace(year=2000) for v in inv.volumes}
    forged = make_plan(inv, load_policy(WIDE), orphan_clock=clock, backup_available=True)
    assert "victim-db" in {a.id for a in forged.actions}
    journal = Journal(state / "journal.sqlite")
    run_id = journal.start(forged)  # written by someone else: no seal
    with sqlite3.connect(state / "journal.sqlite") as db:  # "killed": its process is gone
        db.execute("UPDATE runs SET pid = 999999999 WHERE id = ?", (run_id,))
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", "clean", "--apply", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert proc.returncode == 2 and "--abandon" in proc.stderr, proc
    assert "victim-db" in eng.docker("volume", "ls", "-q").split(), "a planted run removed a named volume"
    abandon = subprocess.run(
        [sys.executable, "-m", "tamer", "clean", "--abandon"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert abandon.returncode == 0, abandon
    after = subprocess.run(
        [sys.executable, "-m", "tamer", "clean", "--apply", "--yes"],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert after.returncode == 0, after
    assert "victim-db" in eng.docker("volume", "ls", "-q").split()
