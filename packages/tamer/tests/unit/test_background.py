"""tamer.background.in_background: the answer or the exception of a read run on a thread, asked for later."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from tamer.background import in_background


def test_the_answer_comes_back_and_can_be_asked_again() -> None:
    started = time.monotonic()
    result = in_background(lambda: (time.sleep(0.2), "answer")[1])
    assert time.monotonic() - started < 0.15, "in_background returned only after the read"
    assert result() == "answer"
    assert time.monotonic() - started >= 0.2
    assert result() == "answer"  # again: at once, the same


def test_the_reads_exception_is_raised_to_the_caller_each_time() -> None:
    def read() -> str:
        raise LookupError("gone")

    result = in_background(read)
    for _ in range(2):
        with pytest.raises(LookupError, match="gone"):
            result()


def test_a_base_exception_is_handed_over_too() -> None:
    def read() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        in_background(read)()


def test_reads_run_side_by_side() -> None:
    started = time.monotonic()
    results = [in_background(lambda i=i: (time.sleep(0.3), i)[1]) for i in range(4)]
    assert [r() for r in results] == [0, 1, 2, 3]
    assert time.monotonic() - started < 1.0, "the four reads ran one after another"


def test_a_read_still_running_does_not_keep_the_process_alive_and_threading_is_not_imported() -> None:
    code = (
        "import sys, time\n"
        "from tamer.background import in_background\n"
        "in_background(lambda: time.sleep(60))\n"
        "print('threading' in sys.modules)\n"
    )
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False" and not proc.stderr
    assert time.monotonic() - started < 20
