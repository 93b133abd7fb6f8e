"""Attack: two tamer processes with different state folders (`sudo tamer` with HOME=/root next to
`sudo -E tamer` with the user's HOME, or TAMER_STATE_DIR set in one shell) change the same engine at once.

The one lock lives in the state folder, so each holds "its" lock and both act: a clean re-checks a
volume while a move has its containers removed for re-creation, and sees it orphaned. One change at a
time must hold per engine, not per state folder.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

BUSYBOX = "tamer-test/busybox:1"


def test_a_second_state_folder_does_not_get_a_second_lock(eng: Any, tmp_path: Path) -> None:
    from tamer.operation import operation_lock

    eng.docker("run", "--name", "two-locks", BUSYBOX, "true")
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path / "other-state")}
    with operation_lock("volume move something", engine=eng.engine):  # this process's state folder
        proc = subprocess.run(
            [sys.executable, "-m", "tamer", "clean", "--apply", "--yes"],
            capture_output=True,
            text=True,
            env=env,
            timeout=300,
        )
    assert proc.returncode == 1 and "another tamer operation" in proc.stderr, proc
    assert "two-locks" in eng.docker("ps", "-a", "--format", "{{.Names}}").split()
