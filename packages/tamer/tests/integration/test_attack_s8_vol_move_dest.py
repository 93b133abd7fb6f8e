"""`volume move --to` a folder that cannot be made (a 300-byte name, past NAME_MAX): the move is rolled
back, says why in words, and leaves no folder it made on the way and no journal behind."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


def test_a_destination_that_cannot_be_made_leaves_nothing_behind(
    eng: Any, tmp_path: Path, private_state_dir: Path
) -> None:
    eng.docker("volume", "create", "s8_mv")
    eng.docker("run", "--rm", "-v", "s8_mv:/d", "tamer-test/busybox:1", "sh", "-c", "echo keep > /d/f")
    dest = tmp_path / "new" / "deeper" / ("x" * 300)
    r = eng.tamer("--json", "volume", "move", "s8_mv", "--to", str(dest), "--apply", "--yes")
    assert r.returncode != 0, r.stdout + r.stderr
    error = json.loads(r.stdout)["errors"][0]
    assert "cannot be made (File name too long)" in error and "rolled back" in error, error
    assert not (tmp_path / "new").exists()  # the folders made above the destination are gone again
    journals = private_state_dir / "operations" / "move"
    assert not journals.exists() or not os.listdir(journals)
    out = eng.docker("run", "--rm", "-v", "s8_mv:/d", "tamer-test/busybox:1", "cat", "/d/f")
    assert out == "keep\n"
