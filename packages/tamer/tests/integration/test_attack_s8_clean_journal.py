"""Session 8 attacks on the clean journal: a killed run whose pid now belongs to another process.

A run is shown as "running right now" while its recorded pid is alive. After a kill -9, the kernel hands
that pid to the next process sooner or later (pid_max wraps; in a container, pids start at 1 again): a
long-lived unrelated process with that pid made every `tamer clean` preview say a clean was running, and
`tamer clean --abandon` refuse to act, for as long as that process lived. A clean that really runs holds
the operation lock; one that does not, does not.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

BUSYBOX = "tamer-test/busybox:1"
FAULTY = Path(__file__).parent.parent / "faulty_tamer.py"
POLICY = 'version = 1\n[containers]\nstates = ["exited", "dead", "created"]\nolder_than = "0s"\n'


def _run(eng: Any, state: Path, *args: str, fault: str | None = None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, *((str(FAULTY), fault) if fault else ("-m", "tamer")), *args]
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def test_a_killed_runs_pid_reused_by_another_process_blocks_neither_preview_nor_abandon(
    eng: Any, tmp_path: Path
) -> None:
    names = [f"s8j-{i}" for i in range(3)]
    for name in names:
        eng.docker("create", "--name", name, BUSYBOX)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    state = tmp_path / "state"
    killed = _run(eng, state, "clean", "--policy", str(policy), "--apply", "--yes", fault="clean.0.after")
    assert killed.returncode == 137, killed.stderr
    stranger = subprocess.Popen(["sleep", "120"])  # the pid the kernel gave out again
    try:
        with sqlite3.connect(state / "journal.sqlite") as db:
            assert (
                db.execute("UPDATE runs SET pid = ? WHERE status = 'running'", (stranger.pid,)).rowcount == 1
            )
        shown = _run(eng, state, "clean", "--json")
        assert shown.returncode == 0, shown.stderr
        data = json.loads(shown.stdout)["data"]
        assert "in_progress" not in data and data.get("unfinished") == 1, data
        abandoned = _run(eng, state, "clean", "--abandon", "--json")
        assert abandoned.returncode == 0, abandoned.stderr
        assert json.loads(abandoned.stdout)["data"] == {"abandoned": 1}
        with sqlite3.connect(state / "journal.sqlite") as db:
            assert db.execute("SELECT status FROM runs").fetchall() == [("abandoned",)]
    finally:
        stranger.kill()
        stranger.wait()


def test_a_clean_that_really_runs_is_shown_as_running(eng: Any, tmp_path: Path) -> None:
    """The other side: while a clean holds the lock (here: stopped at a fault point), a preview says so and
    removes nothing, and --abandon does not pull the run from under it."""
    for i in range(2):
        eng.docker("create", "--name", f"s8j-live-{i}", BUSYBOX)
    policy = tmp_path / "policy.toml"
    policy.write_text(POLICY)
    state = tmp_path / "state"
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    hold = (
        "import sys, time\n"
        "from tamer.operation import faults\n"
        "from tamer.cli import main\n"
        "def stop(point, ctx):\n"
        "    if point == 'clean.0.before':\n"
        "        print('holding', flush=True); time.sleep(60)\n"
        "faults.install(stop)\n"
        "sys.exit(main(sys.argv[1:]))\n"
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", hold, "clean", "--policy", str(policy), "--apply", "--yes"],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "holding"
        shown = _run(eng, state, "clean", "--json")
        assert json.loads(shown.stdout)["data"].get("in_progress") == 1, shown.stdout
        abandoned = _run(eng, state, "clean", "--abandon", "--json")
        assert "abandoned" not in json.loads(abandoned.stdout)["data"], abandoned.stdout
    finally:
        proc.kill()
        proc.wait()
