"""Hostile review (session 8, helper F) of `tamer watch` and its history: a cursor left in the future
(the engine's clock was ahead once, then set right) and damaged rows in the store."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tamer.history import History


def _watch_once(eng: Any, state: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(
        [sys.executable, "-m", "tamer", "--json", "watch", "--once"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_a_cursor_in_the_future_does_not_stop_watch_for_ever(eng: Any, tmp_path: Path) -> None:
    # the cursor is where the last watch stopped, in the engine's clock; with that clock once ten years
    # ahead and then set right, every later `watch --once` asked for events since a moment after its
    # `until` (an engine error), and max() kept the cursor there, so watch never recorded again
    state = tmp_path / "state"
    state.mkdir()
    History(eng.host, state / "history.sqlite").record([], cursor=time.time() + 10 * 365 * 86400)
    eng.docker("run", "--rm", "tamer-test/busybox:1", "true")
    proc = _watch_once(eng, state)
    assert proc.returncode == 0, proc.stderr[-2000:]
    envelope = json.loads(proc.stdout)
    assert envelope["data"]["recorded"] >= 1, envelope
    notes = " ".join(envelope.get("errors") or [])
    assert "cursor" in notes and "ahead" in notes, envelope
    cursor = History(eng.host, state / "history.sqlite").cursor()
    assert cursor is not None and cursor <= time.time() + 60, cursor
    # and the next run is quiet: the cursor was put back, not warned about every time
    again = _watch_once(eng, state)
    assert again.returncode == 0 and "ahead" not in again.stdout + again.stderr, again


def test_damaged_times_in_the_history_are_left_out_and_overwritten_by_watch(eng: Any, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    path = state / "history.sqlite"
    History(eng.host, path)
    with sqlite3.connect(path) as db:
        db.execute(
            "INSERT INTO last_used VALUES (?, 'image', 'tamer-test/busybox:1', 'garbage')", (eng.host,)
        )
        db.execute("INSERT INTO cursor VALUES (?, 1e300)", (eng.host,))
    eng.docker("run", "--rm", "tamer-test/busybox:1", "true")
    proc = _watch_once(eng, state)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr, proc.stderr
    used = History(eng.host, path).last_used()
    assert ("image", "tamer-test/busybox:1") in used, used  # the real use replaced the damaged time
