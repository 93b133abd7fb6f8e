"""The walker's worker processes end with the process that forked them, even when it is SIGKILLed.

`tamer df` forks its walkers first thing; killed with SIGKILL (a timer's timeout, the OOM killer) it
left them behind for good, blocked on their pipes (seen: two orphans per killed df).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

HOLDER = """
import sys, time
from tamer.sizes import Walker
walker = Walker(workers=2, fork_now=True)
print("ready", flush=True)
time.sleep(120)
"""


def children(pid: int) -> set[int]:
    found: set[int] = set()
    for task in Path(f"/proc/{pid}/task").iterdir():
        found |= {int(c) for c in (task / "children").read_text().split()}
    return found


def alive(pid: int) -> bool:
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except FileNotFoundError:
        return False
    return "\nState:\tZ" not in status  # a zombie waiting for init to reap it has ended


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc")
def test_workers_end_when_their_parent_is_killed() -> None:
    holder = subprocess.Popen([sys.executable, "-c", HOLDER], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        deadline = time.monotonic() + 30
        workers: set[int] = set()
        while len(workers) < 2 and time.monotonic() < deadline:
            workers = children(holder.pid)
            time.sleep(0.05)
        assert len(workers) == 2, workers
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=30)
        deadline = time.monotonic() + 10
        while any(alive(w) for w in workers) and time.monotonic() < deadline:
            time.sleep(0.05)
        left = [w for w in workers if alive(w)]
        for w in left:  # never leave them behind, even when the test fails
            os.kill(w, signal.SIGKILL)
        assert not left, f"workers {left} outlived their parent"
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()


QUIET_HOLDER = """
import sys, time
from tamer.sizes import Walker
walker = Walker(workers=2, fork_now=True)
print("ready", flush=True)
try:
    time.sleep(120)
except KeyboardInterrupt:
    walker.abandon()
    sys.exit(130)
"""


def test_ctrl_c_is_the_parents_to_handle() -> None:
    """Ctrl-C reaches the whole process group: the parent stops and says so; a worker prints nothing."""
    holder = subprocess.Popen(
        [sys.executable, "-c", QUIET_HOLDER],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),  # a shell's `&` ignores it
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "ready"
        time.sleep(0.5)  # the workers are waiting for tasks
        os.killpg(holder.pid, signal.SIGINT)
        _, err = holder.communicate(timeout=30)
        assert holder.returncode == 130
        assert err == "", err
    finally:
        if holder.poll() is None:
            holder.kill()
            holder.wait()
