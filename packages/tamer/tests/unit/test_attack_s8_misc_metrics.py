"""Hostile review (session 8, helper F) of `tamer metrics --textfile`: runs killed before their rename
(kill -9, a cron timeout, Ctrl-C) must not pile temporaries up in node_exporter's folder."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tamer.metrics_io import write_textfile

WRITER = """
import sys
from pathlib import Path
from tamer.metrics_io import write_textfile
i = 0
while True:
    i += 1
    write_textfile(Path(sys.argv[1]), f"x {i}\\n" + "#" * 2000000 + "\\nend\\n")
"""


def test_temporaries_of_killed_runs_are_removed_by_the_next_run(tmp_path: Path) -> None:
    for delay in (0.35, 0.5, 0.65):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path)])
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    # one planted as a killed run's for sure (the kills above may land between writes)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (tmp_path / f".tamer.prom.{dead.pid}.abcd1234.tmp").write_text("torn")
    # a live writer's temporary is its own: never touched
    live = tmp_path / f".tamer.prom.{os.getppid()}.zzzz.tmp"
    live.write_text("being written")
    write_textfile(tmp_path, "x 1\n")
    assert sorted(os.listdir(tmp_path)) == sorted(["tamer.prom", live.name]), os.listdir(tmp_path)
    assert (tmp_path / "tamer.prom").read_text() == "x 1\n"


def test_an_interrupt_mid_write_leaves_no_temporary(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "tamer.prom").write_text("old\n")

    def interrupted(fd: int) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(os, "fsync", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_textfile(tmp_path, "new\n")
    assert os.listdir(tmp_path) == ["tamer.prom"]
    assert (tmp_path / "tamer.prom").read_text() == "old\n"
