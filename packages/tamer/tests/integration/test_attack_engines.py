"""Attack: two engines on one host share `docker info`'s ID (it is the host's /etc/docker/key.json), so
the ID alone does not tell them apart. A plan made on one must never act on the other."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.sandbox import PrivateEngine, why_no_private_engine

BUSYBOX = "tamer-test/busybox:1"


@pytest.fixture
def second_engine() -> Iterator[PrivateEngine]:
    reason = why_no_private_engine()
    if reason:
        pytest.skip(reason)
    sandbox = PrivateEngine.create()
    try:
        sandbox.start()
        yield sandbox
    finally:
        sandbox.stop()


def _docker(host: str, *args: str, input: bytes | None = None) -> bytes:
    proc = subprocess.run(["docker", "-H", host, *args], capture_output=True, input=input, timeout=120)
    assert proc.returncode == 0, proc.stderr.decode(errors="replace")
    return proc.stdout


def test_a_plan_made_on_one_engine_is_refused_by_another_on_the_same_host(
    eng: Any, second_engine: PrivateEngine, tmp_path: Path
) -> None:
    other = second_engine.host
    info = {h: json.loads(_docker(h, "info", "--format", "{{json .}}")) for h in (eng.host, other)}
    assert info[eng.host]["DockerRootDir"] != info[other]["DockerRootDir"]
    # the same dangling image (same content, same ID) on both engines
    eng.docker("create", "--name", "to-commit", BUSYBOX, "true")
    image = eng.docker("commit", "to-commit").strip()
    eng.docker("rm", "to-commit")
    _docker(other, "load", input=_docker(eng.host, "save", image))
    assert image in _docker(other, "images", "-aq", "--no-trunc").decode()
    env = {**os.environ, "TAMER_STATE_DIR": str(tmp_path)}
    made = subprocess.run(
        [sys.executable, "-m", "tamer", "-H", eng.host, "plan", "-o", str(tmp_path / "p.json")],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    assert made.returncode == 0, made.stderr
    assert image in (tmp_path / "p.json").read_text()
    applied = subprocess.run(
        [
            sys.executable,
            "-m",
            "tamer",
            "-H",
            other,
            "clean",
            "--plan",
            str(tmp_path / "p.json"),
            "--apply",
            "--yes",
            "--json",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
    )
    envelope = json.loads(applied.stdout)
    assert applied.returncode == 1 and envelope["status"] == "error", envelope
    assert "nothing was removed" in json.dumps(envelope["errors"])
    assert image in _docker(other, "images", "-aq", "--no-trunc").decode(), (
        "the other engine's image was removed"
    )


def test_an_unfinished_run_of_another_engine_says_how_to_set_it_aside(
    eng: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The engine at an address was replaced (another data root) while a clean was unfinished: every
    `clean --apply` there resumes that run and is refused; the refusal must say how to get out."""
    from tamer.apply import WrongEngine, apply_plan
    from tamer.journal import Journal
    from tamer.plan import Plan
    from tamer.policy import load_policy, policy_to_json
    from tamer.sealing import plan_key, seal_plan

    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path))
    plan = Plan(
        host=eng.host,
        engine_id="SAME:ID@/var/lib/docker-old",
        policy="default",
        rules=policy_to_json(load_policy("")),
        made_at="2026-01-01T00:00:00+00:00",
        actions=(),
        refusals=(),
    )
    journal = Journal(tmp_path / "journal.sqlite")
    run_id = journal.start(plan, seal_plan(plan, plan_key())["mac"])
    with pytest.raises(WrongEngine, match="clean --abandon"):
        apply_plan(eng.engine, plan, journal, resume_run=run_id, read_current=lambda e: pytest.fail("read"))
