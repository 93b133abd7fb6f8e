"""`tamer df` freezes what lives at its end (gc.freeze: the exit need not walk it) only in the command's own
process (tamer.cli.run), never for a caller of main() that goes on: there, before, every df's objects
stayed frozen (never collected) for the rest of the process, one df's more each call.
"""

from __future__ import annotations

import gc
import os
import subprocess
import sys
from typing import Any

import pytest


def test_df_in_process_freezes_nothing_and_repeated_calls_keep_no_objects(
    test_engine: Any, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from tamer.cli import main

    monkeypatch.setenv("DOCKER_HOST", test_engine.host)
    gc.unfreeze()
    assert gc.get_freeze_count() == 0
    assert main(["df", "--json"]) == 0  # the first call imports what df needs: not counted below
    gc.collect()
    assert gc.get_freeze_count() == 0, "an in-process df froze its objects (never collected from then on)"
    tracked = len(gc.get_objects())
    for _ in range(5):
        assert main(["df", "--json"]) == 0
    capsys.readouterr()
    gc.collect()
    assert gc.get_freeze_count() == 0
    grown = len(gc.get_objects()) - tracked
    # a df makes thousands of tracked objects (its inventory, its report); five kept would be far more
    assert grown < 2000, f"{grown} more objects tracked after five in-process dfs"


def test_the_command_itself_still_freezes_at_its_end(test_engine: Any) -> None:
    code = (
        "import atexit, gc, os, sys, tamer.cli\n"
        "atexit.register(lambda: os.write(2, f'frozen={gc.get_freeze_count()}'.encode()))\n"
        "sys.argv = ['tamer', 'df', '--json']\n"
        "tamer.cli.run()\n"
    )
    env = {**os.environ, "DOCKER_HOST": test_engine.host}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    frozen = int(done.stderr.rsplit("frozen=", 1)[1])
    assert frozen > 1000, done.stderr
