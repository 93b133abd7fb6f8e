"""Bad input and faults for df / ls: a clear message, a non-zero exit code, nothing changed."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

from tamer.collect import read_raw_snapshot
from tamer.engine import connect
from tamer.inventory import build_inventory
from tamer.sizes import measure_trees

BUSYBOX = "tamer-test/busybox:1"
NOBODY = 65534


def run_tamer(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tamer", *args],
        capture_output=True,
        text=True,
        env={**os.environ, **env},
        timeout=120,
    )


def state(eng: Any) -> tuple[set[str], ...]:
    return (
        set(eng.docker("ps", "-a", "--no-trunc", "--format", "{{.ID}} {{.State}}").splitlines()),
        set(eng.docker("volume", "ls", "-q").split()),
        set(eng.docker("images", "-aq", "--no-trunc").split()),
    )


def test_no_engine_at_docker_host_says_where_and_how(tmp_path: Path) -> None:
    where = f"unix://{tmp_path}/no-engine.sock"
    proc = run_tamer("df", env={"DOCKER_HOST": where})
    assert proc.returncode == 1
    assert where in proc.stderr and "start one" in proc.stderr and "Traceback" not in proc.stderr
    doc = json.loads(run_tamer("ls", "--json", env={"DOCKER_HOST": where}).stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1 and where in doc["errors"][0]


def test_traceback_only_on_request(tmp_path: Path) -> None:
    where = f"unix://{tmp_path}/no-engine.sock"
    proc = run_tamer("df", "--traceback", env={"DOCKER_HOST": where})
    assert proc.returncode == 1 and "Traceback" in proc.stderr


def test_permission_denied_on_the_socket(eng: Any) -> None:
    before = state(eng)
    sock = eng.host.removeprefix("unix://")
    st = os.stat(sock)
    os.chown(sock, NOBODY, st.st_gid)
    os.chmod(sock, 0o600)
    try:
        proc = eng.tamer("df", powerless=True)
    finally:
        os.chown(sock, st.st_uid, st.st_gid)
        os.chmod(sock, st.st_mode)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "permission denied" in proc.stderr and "docker` group" in proc.stderr
    assert state(eng) == before


def test_unknown_kind_and_filter_are_usage_errors(eng: Any) -> None:
    before = state(eng)
    bad_kind = eng.tamer("ls", "pods")
    assert (
        bad_kind.returncode == 2 and "unknown kind 'pods'" in bad_kind.stderr and "images" in bad_kind.stderr
    )
    bad_filter = eng.tamer("ls", "volumes", "--filter", "colour=red")
    assert bad_filter.returncode == 2 and "unknown filter 'colour'" in bad_filter.stderr
    assert "orphaned" in bad_filter.stderr
    bad_state = eng.tamer("ls", "containers", "--filter", "state=sleeping", "--json")
    doc = json.loads(bad_state.stdout)
    assert bad_state.returncode == 2 and doc["status"] == "usage" and "sleeping" in doc["errors"][0]
    bad_age = eng.tamer("ls", "images", "--filter", "older-than=soon")
    assert bad_age.returncode == 2 and "7d" in bad_age.stderr
    bad_flag = eng.tamer("df", "--frobnicate")
    assert bad_flag.returncode == 2 and "frobnicate" in bad_flag.stderr
    assert state(eng) == before


def test_unreadable_data_root_falls_back_and_says_so(eng: Any) -> None:
    # a user who may use the socket but not read the data-root
    mode = os.stat(eng.data_root).st_mode
    os.chmod(eng.data_root, 0)
    try:
        proc = eng.tamer("df", "--sizing", "local", powerless=True)
    finally:
        os.chmod(eng.data_root, mode)
    assert proc.returncode == 0, proc.stderr
    assert "the engine's own figures" in proc.stdout
    assert "not readable by this user" in proc.stdout


def test_objects_vanishing_while_sized_are_skipped_and_said(eng: Any, tmp_path: Path) -> None:
    # a real race, made deterministic: folders disappear between listing and walking (the walker lists
    # each root's top two levels first, then walks the folders below them)
    root = tmp_path / "vol"
    for i in range(5):
        (root / f"d{i}" / "e").mkdir(parents=True)
        (root / f"d{i}" / "e" / "f").write_bytes(b"x" * 1000)

    def remove_rest(done: int, total: int) -> None:
        if done == 1:
            for i in range(5):
                shutil.rmtree(root / f"d{i}", ignore_errors=True)

    sizes = measure_trees({"v": str(root), "gone": str(tmp_path / "never")}, workers=1, progress=remove_rest)
    assert sizes["gone"] is None
    usage = sizes["v"]
    assert usage is not None and usage.vanished >= 1 and usage.apparent < 5000

    # and a container removed between listing and inspecting is skipped with a warning
    eng.docker("run", "--name", "ephemeral", BUSYBOX, "true")
    engine = connect(eng.host)
    original = engine.containers

    def listing_then_remove() -> list[dict[str, Any]]:
        listed = original()
        eng.docker("rm", "ephemeral")
        return listed

    engine.containers = listing_then_remove  # type: ignore[method-assign]
    inv = build_inventory(read_raw_snapshot(engine))
    assert "ephemeral" not in {c.name for c in inv.containers}
    assert any("vanished while being read" in w for w in inv.warnings)
