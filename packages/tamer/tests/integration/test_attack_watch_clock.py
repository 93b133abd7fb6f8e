"""Attack: `tamer watch --once` with tamer's clock ahead of the engine's (a skewed remote engine, or a
clock a century ahead). `--once` asked for events until tamer's "now", so the engine streamed until that
moment came: minutes of skew meant minutes of waiting, a century meant forever."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest


@pytest.mark.skipif(shutil.which("faketime") is None, reason="faketime is not installed")
def test_watch_once_ends_whatever_tamers_clock_says(eng: Any, tmp_path: Path) -> None:
    eng.docker("run", "--rm", "tamer-test/busybox:1", "true")
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path)}
    try:
        proc = subprocess.run(
            [
                "faketime",
                "-f",
                "+100y",
                sys.executable,
                "-m",
                "tamer",
                "--json",
                "watch",
                "--once",
                "--since",
                "1h",
            ],
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
        )
    except subprocess.TimeoutExpired:
        pytest.fail("watch --once waited for tamer's clock to come (a century ahead of the engine's)")
    assert proc.returncode == 0, proc
    assert json.loads(proc.stdout)["data"]["recorded"] >= 1
