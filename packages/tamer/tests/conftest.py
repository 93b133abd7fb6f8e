"""Shared fixtures: a private, throwaway Docker engine for integration tests.

The engine gets its own data-root, exec-root, socket, pidfile and containerd
namespace and is stopped (and its folder deleted) at the end of the session.
The user's default engine is never touched unless TAMER_TEST_DOCKER_HOST names
one. When no engine can be started the integration tests are skipped with a
loud reason, except under CI=true, where that is a failure.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from tamer.engine import Engine, connect
from tamer.sandbox import PrivateEngine, build_busybox_image, mongo_standin, why_no_private_engine

BUSYBOX = "tamer-test/busybox:1"
MONGO = "tamer-test/mongo-standin:1"
FAULTY_TAMER = Path(__file__).parent / "faulty_tamer.py"


@dataclass
class SandboxEngine:
    host: str
    engine: Engine
    data_root: Path
    private: PrivateEngine | None

    def docker(self, *args: str, check: bool = True, input: bytes | None = None) -> str:
        """The docker CLI against this engine: the outside oracle."""
        proc = subprocess.run(
            ["docker", "-H", self.host, *args], capture_output=True, input=input, timeout=120
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"docker {' '.join(args)} failed: {proc.stderr.decode(errors='replace')}")
        return proc.stdout.decode(errors="replace")

    def tamer(
        self, *args: str, env: dict[str, str] | None = None, powerless: bool = False, fault: str | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run the tamer CLI as a user would, against this engine.

        powerless: run as root stripped of every capability, so file permissions
        apply to it as to an ordinary user (who may not be able to reach this
        checkout, hence not a real other uid).
        fault: run through tests/faulty_tamer.py, which exits 137 (as kill -9 would) at that fault point
        ("move.copy.after", "@3" for the third point hit; see tamer.operation.faults).
        """
        full_env = {**os.environ, "DOCKER_HOST": self.host, **(env or {})}
        cmd = [sys.executable, "-m", "tamer", *args]
        if fault is not None:
            cmd = [sys.executable, str(FAULTY_TAMER), fault, *args]
        if powerless:
            cmd = ["setpriv", "--bounding-set=-all", "--inh-caps=-all", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, env=full_env, timeout=300)


@pytest.fixture(autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test gets its own tamer state dir (journals, lock, history), in-process and in the CLIs it runs,
    so tests never share the user's (or each other's) state and lock. A test may still pass its own."""
    path = tmp_path_factory.mktemp("tamer-state")
    monkeypatch.setenv("TAMER_STATE_DIR", str(path))
    return path


def _skip_or_fail(reason: str) -> None:
    message = f"!!! tamer integration tests cannot run: {reason}"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message + " (CI=true: a skipped integration test is a failure)", pytrace=False)
    pytest.skip(message)


@pytest.fixture(scope="session")
def test_engine(tmp_path_factory: pytest.TempPathFactory) -> Iterator[SandboxEngine]:
    external = os.environ.get("TAMER_TEST_DOCKER_HOST")
    if external:
        engine = connect(external)
        yield SandboxEngine(external, engine, Path(str(engine.info().get("DockerRootDir"))), None)
        return
    reason = why_no_private_engine()
    if reason:
        _skip_or_fail(reason)
    sandbox = PrivateEngine.create()
    try:
        engine = sandbox.start()
    except Exception as exc:
        sandbox.stop()
        _skip_or_fail(f"the private engine did not start: {exc}")
        raise
    try:
        build_busybox_image(engine, BUSYBOX)
        mongo_standin(engine, MONGO)
        yield SandboxEngine(sandbox.host, engine, sandbox.data_root, sandbox)
    finally:
        sandbox.stop()
