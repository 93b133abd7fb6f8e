"""Attack: restore into an empty volume that a running container mounts.

"Empty" is only true for a moment when a running program owns the folder (a
database initialising its data dir writes into it as the restore runs): the
archive's files and the program's are mixed, and the program reads files
appearing under it. A restore target must be new or empty AND have no running
user, checked at the point of action.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

BUSYBOX = "tamer-test/busybox:1"


def test_restore_into_a_volume_a_running_container_mounts_is_refused(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "rs-src")
    eng.docker("run", "--rm", "-v", "rs-src:/d", BUSYBOX, "sh", "-c", "echo data > /d/f")
    archive = tmp_path / "rs.tar.zst"
    made = eng.tamer("volume", "backup", "rs-src", "-o", str(archive))
    assert made.returncode == 0, made.stderr
    eng.docker("volume", "create", "rs-live")
    eng.docker("run", "-d", "--name", "rs-user", "-v", "rs-live:/d", BUSYBOX, "sleep", "300")
    proc = eng.tamer("volume", "restore", str(archive), "rs-live")
    assert proc.returncode in (1, 2) and "rs-user" in proc.stderr, proc
    assert eng.docker("exec", "rs-user", "ls", "-A", "/d").strip() == ""
