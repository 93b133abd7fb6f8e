"""Session 8 attack on ``faithful audit-logprobs``: a path that is not a regular file is refused unread."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
from pathlib import Path

import pytest


def _bounded_memory() -> None:
    # before the fix /dev/zero was read until memory ran out: keep a regression from taking the machine
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))


def _audit(path: str) -> subprocess.CompletedProcess[str]:
    # a subprocess with a timeout: before the fix a FIFO without a writer blocked forever in open()
    return subprocess.run(
        [sys.executable, "-m", "faithful.cli", "audit-logprobs", path, "--json"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        preexec_fn=_bounded_memory,
    )


def _cases(tmp_path: Path) -> list[str]:
    fifo = tmp_path / "records.fifo"
    os.mkfifo(fifo)
    return [str(fifo), "/dev/zero", str(tmp_path)]


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs mkfifo")
def test_a_fifo_a_device_or_a_folder_is_a_clear_error_without_being_read(tmp_path: Path) -> None:
    for path in _cases(tmp_path):
        try:
            done = _audit(path)
        except subprocess.TimeoutExpired:  # pragma: no cover - the bug: a FIFO is opened and blocks
            pytest.fail(f"audit-logprobs {path} did not return")
        env = json.loads(done.stdout)
        assert done.returncode == 1 and env["exit_code"] == 1 and env["status"] == "error", (
            path,
            done.stderr,
        )
        # before: /dev/zero was read until memory ran out, "unexpected error (MemoryError)"
        assert env["errors"] == [
            f"{path!r} is not a regular file (a folder, FIFO or device); expected a JSONL file of audit records"
        ]
        assert "Traceback" not in done.stderr
