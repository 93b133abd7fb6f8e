"""tamer's --json envelope against the schema both tools share (faithful's tests keep an identical check).

{"version": 1, "command": str | null, "status": ..., "exit_code": int, "data": any, "errors": [str, ...]}
on stdout, on success, on failure and on usage errors alike, wherever --json is placed.
No engine is running here on purpose: engine commands fail, and must still print the envelope.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

STATUS_BY_EXIT_CODE = {0: "ok", 1: "error", 2: "usage", 3: "partial", 130: "interrupted"}
KEYS = {"version", "command", "status", "exit_code", "data", "errors"}


def check_envelope(text: str, *, exit_code: int | None = None) -> dict[str, Any]:
    """Parse stdout as exactly one envelope and check every field; returns the document."""
    doc = json.loads(text)
    assert isinstance(doc, dict) and set(doc) == KEYS, f"envelope keys: {doc}"
    assert type(doc["version"]) is int and doc["version"] == 1, (
        f"version must be the number 1: {doc['version']!r}"
    )
    assert doc["command"] is None or (isinstance(doc["command"], str) and doc["command"]), doc["command"]
    code = doc["exit_code"]
    assert type(code) is int and code in STATUS_BY_EXIT_CODE, f"exit_code: {code!r}"
    assert doc["status"] == STATUS_BY_EXIT_CODE[code], f"status {doc['status']!r} for exit code {code}"
    if exit_code is not None:
        assert code == exit_code, f"exit_code {code} in the envelope, the process exited {exit_code}"
    errors = doc["errors"]
    assert isinstance(errors, list) and all(isinstance(e, str) and e.strip() for e in errors), errors
    if code == 0:
        assert all(e.startswith("warning:") for e in errors), f"status ok with errors: {errors}"
    else:
        assert errors, "a failure must say why in errors"
    return doc


NO_ENGINE = "unix:///nonexistent/tamer-envelope-test.sock"


def tamer(*argv: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": NO_ENGINE, "TAMER_STATE_DIR": str(tmp_path / "state")}
    return subprocess.run(
        [sys.executable, "-m", "tamer", *argv], capture_output=True, text=True, env=env, timeout=120
    )


@pytest.mark.parametrize(
    ("argv", "code", "command", "fragment"),
    [
        (["policy", "show"], 0, "policy", None),
        (["df"], 1, "df", NO_ENGINE),
        (["clean", "--apply", "--yes"], 1, "clean", NO_ENGINE),
        (["volume", "ls"], 1, "volume", NO_ENGINE),
        (["ls", "--sort", "bogus"], 2, "ls", "invalid choice"),
        (["df", "--frobnicate"], 2, "df", "frobnicate"),
        (["frobnicate"], 2, None, "invalid choice"),
        ([], 2, None, "no command"),
        (["policy", "check", "/nonexistent/policy.toml"], 2, "policy", "does not exist"),
    ],
)
@pytest.mark.parametrize("where", ["first", "last"])
def test_every_outcome_prints_the_shared_envelope(
    argv: list[str], code: int, command: str | None, fragment: str | None, where: str, tmp_path: Path
) -> None:
    full = ["--json", *argv] if where == "first" else [*argv, "--json"]
    proc = tamer(*full, tmp_path=tmp_path)
    assert proc.returncode == code, proc.stdout + proc.stderr
    doc = check_envelope(proc.stdout, exit_code=proc.returncode)
    assert doc["command"] == command
    if fragment:
        assert fragment in doc["errors"][-1]
    assert "Traceback" not in proc.stderr


def test_a_bad_option_value_still_gets_an_envelope(tmp_path: Path) -> None:
    # a usage error raised while argparse converts a value (df --top -1), before any handler
    proc = tamer("df", "--top", "-1", "--json", tmp_path=tmp_path)
    doc = check_envelope(proc.stdout, exit_code=proc.returncode)
    assert proc.returncode == 2 and "whole number >= 1" in doc["errors"][0]
