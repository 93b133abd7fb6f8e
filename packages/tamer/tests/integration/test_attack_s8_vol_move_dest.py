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


def test_rollback_as_the_messages_say_it_needs_no_to(eng: Any, tmp_path: Path) -> None:
    """A failed move says "rerun with --rollback"; that command was a usage error (--to required) and the
    killed move's journal waited for a --to the rollback never reads."""
    eng.docker("volume", "create", "s8_rb")
    eng.docker("run", "--rm", "-v", "s8_rb:/d", "tamer-test/busybox:1", "sh", "-c", "echo keep > /d/f")
    dest = tmp_path / "disk2" / "s8_rb"
    r = eng.tamer("volume", "move", "s8_rb", "--to", str(dest), "--apply", "--yes", fault="move.copy.after")
    assert r.returncode == 137, r.stdout + r.stderr
    r = eng.tamer("volume", "move", "s8_rb", "--rollback")
    assert r.returncode == 0 and "unfinished" in r.stdout, r.stdout + r.stderr
    r = eng.tamer("volume", "move", "s8_rb", "--rollback", "--apply", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not dest.exists()
    out = eng.docker("run", "--rm", "-v", "s8_rb:/d", "tamer-test/busybox:1", "cat", "/d/f")
    assert out == "keep\n"
    r = eng.tamer("--json", "volume", "move", "s8_rb")  # without --rollback, --to is still needed
    assert r.returncode == 2 and "needs --to PATH" in json.loads(r.stdout)["errors"][0], r.stdout + r.stderr


def test_a_move_asked_while_a_rollback_is_unfinished_changes_nothing(
    eng: Any, tmp_path: Path, private_state_dir: Path
) -> None:
    """It finished the rollback itself and then said both "rerun with --rollback" and "was rolled back"."""
    eng.docker("volume", "create", "s8_rbk")
    eng.docker("run", "--rm", "-v", "s8_rbk:/d", "tamer-test/busybox:1", "sh", "-c", "echo keep > /d/f")
    dest = tmp_path / "disk2" / "s8_rbk"
    r = eng.tamer("volume", "move", "s8_rbk", "--to", str(dest), "--apply", "--yes", fault="move.copy.after")
    assert r.returncode == 137, r.stdout + r.stderr
    (journal,) = (private_state_dir / "operations" / "move").iterdir()
    state = json.loads(journal.read_text())
    state["state"] = "rolling_back"  # what a rollback killed midway leaves (set before it undoes anything)
    journal.write_text(json.dumps(state))
    r = eng.tamer("--json", "volume", "move", "s8_rbk", "--to", str(dest), "--apply", "--yes")
    assert r.returncode == 2, r.stdout + r.stderr
    error = json.loads(r.stdout)["errors"][0]
    assert "--rollback --apply" in error and "rolled back" not in error, error
    assert journal.exists() and dest.exists()  # nothing was changed: the copy waits for the rollback
    r = eng.tamer("volume", "move", "s8_rbk", "--rollback", "--apply", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    assert not journal.exists() and not dest.exists()
    out = eng.docker("run", "--rm", "-v", "s8_rbk:/d", "tamer-test/busybox:1", "cat", "/d/f")
    assert out == "keep\n"
