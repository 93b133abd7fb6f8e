"""Every action goes to the engine the user named (issue 10, failure 1), on a real private engine.

`tamer -H ADDR clean --apply --yes` used to act on DOCKER_HOST's engine: the subcommand's
default for --host overwrote the -H given before the command. Here one address is the
private engine and the other has no engine at all, both ways round, with -H before and
after the command: the private engine changes exactly when it is the one named.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"


def _stopped_container(eng: Any, name: str) -> str:
    return eng.docker("create", "--name", name, BUSYBOX, "true").strip()


def _exists(eng: Any, cid: str) -> bool:
    return cid in eng.docker("ps", "-aq", "--no-trunc").split()


@pytest.mark.parametrize("placement", ["before", "after"])
def test_h_names_the_engine_even_when_docker_host_points_elsewhere(
    eng: Any, placement: str, tmp_path: Path
) -> None:
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    cid = _stopped_container(eng, f"cli-choice-{placement}")
    argv = (
        ["-H", eng.host, "clean", "--apply", "--yes"]
        if placement == "before"
        else ["clean", "--apply", "--yes", "-H", eng.host]
    )
    proc = eng.tamer(
        *argv, "--json", env={"DOCKER_HOST": nowhere, "TAMER_STATE_DIR": str(tmp_path / "state")}
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["status"] == "ok" and doc["errors"] == []
    assert not _exists(eng, cid), "the stopped container on the engine named by -H should have been removed"


@pytest.mark.parametrize("placement", ["before", "after"])
def test_h_to_an_absent_engine_never_falls_back_to_docker_host(
    eng: Any, placement: str, tmp_path: Path
) -> None:
    nowhere = f"unix://{tmp_path}/no-engine.sock"
    cid = _stopped_container(eng, f"cli-absent-{placement}")
    for command in (["clean", "--apply", "--yes"], ["plan"], ["df"], ["ls", "volumes"], ["volume", "ls"]):
        argv = ["-H", nowhere, *command] if placement == "before" else [*command, "-H", nowhere]
        proc = eng.tamer(*argv, env={"DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(tmp_path / "state")})
        assert proc.returncode == 1, (argv, proc.stdout, proc.stderr)
        assert nowhere in proc.stderr and eng.host not in proc.stderr, (argv, proc.stderr)
        assert proc.stdout == ""
    assert _exists(eng, cid), "an engine nobody named was changed"


STATE_FILES = ("history.sqlite", "journal.sqlite")


@pytest.mark.parametrize("how", ["garbage", "directory", "unreadable", "state-dir-is-a-file"])
def test_a_damaged_state_never_blocks_reading_or_planning(eng: Any, how: str, tmp_path: Path) -> None:
    """df, ls and plan (and a clean preview) go on without history, and say so; nothing is replaced."""
    state = tmp_path / "state"
    if how == "state-dir-is-a-file":
        state.write_text("not a folder")
    else:
        state.mkdir()
    for name in STATE_FILES if how != "state-dir-is-a-file" else ():
        db = state / name
        if how == "garbage":
            db.write_bytes(b"this is not an sqlite database\x00" * 100)
        elif how == "directory":
            db.mkdir()
        else:
            db.write_bytes(b"")
            db.chmod(0)
    if how == "unreadable":
        state.chmod(0o755)
        tmp_path.chmod(0o755)
    env = {"TAMER_STATE_DIR": str(state)}
    powerless = how == "unreadable"  # root ignores mode 000; a user without privileges does not
    for command in (["plan"], ["df"], ["ls"], ["ls", "volumes"]):
        proc = eng.tamer(*command, env=env, powerless=powerless)
        assert proc.returncode == 0, (command, proc.stdout, proc.stderr)
        assert "Traceback" not in proc.stderr and "internal error" not in proc.stderr
        if command[0] == "plan":
            assert "warning:" in proc.stderr and str(state) in proc.stderr and "without it" in proc.stderr
        doc = json.loads(eng.tamer(*command, "--json", env=env, powerless=powerless).stdout)
        assert doc["status"] == "ok" and doc["exit_code"] == 0, doc["errors"]
        assert all(e.startswith("warning:") for e in doc["errors"])
        if command[0] == "plan":
            assert doc["errors"] and str(state) in doc["errors"][0]
    for name in STATE_FILES if how != "state-dir-is-a-file" else ():
        assert os.path.lexists(state / name)  # left for the user to look at; never silently replaced
    assert os.path.lexists(state)


def test_only_the_first_exchange_has_the_short_bound(eng: Any) -> None:
    from tamer.engine import client

    engine = client.connect(eng.host, timeout=321.0, answer_within=0.5)
    assert engine.api.timeout == 321.0  # slow operations (system df on a big host) keep the long bound
    assert engine.info()["DockerRootDir"]
