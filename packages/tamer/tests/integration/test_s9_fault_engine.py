"""Faults: the engine killed (SIGKILL to dockerd and its containerd) in the middle of `clean --apply` and of
`volume move`, then started again; and what such a kill leaves behind (a container whose removal was cut
short: dead, its layer gone) planned and removed like any other.

After the restart tamer's own advice is followed (rerun the clean; `volume move --rollback --apply`), and
the end is checked with the docker CLI and sha256: nothing running or unplanned removed, every planned
container gone, the journal's counts right, the volume's data intact and in one place.

The move's kill point is drawn from a seeded generator (the seed is printed; TAMER_S9_ENGINE_SEED=N replays
it); TAMER_S9_ENGINE_KILLS=N kills at N points instead of 1 (read by the test only).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from tamer.volumes.guard import volume_data_path

BUSYBOX = "tamer-test/busybox:1"
STOPS_AT_ONCE = "trap 'exit 0' TERM; while true; do sleep 0.2; done"
# kills the engine's whole process group (dockerd and its containerd) when fault point AT is reached, waits
# until dockerd is gone, then lets tamer go on against no engine
KILLING = (
    "import os, signal, sys, time\nfrom tamer.operation import faults\nfrom tamer.cli import main\n"
    "pid, at = int(sys.argv.pop(1)), sys.argv.pop(1)\n"
    "def kill(point, ctx):\n"
    "    if point == at:\n"
    "        print('engine-killed-at: ' + point, file=sys.stderr, flush=True)\n"
    "        os.killpg(os.getpgid(pid), signal.SIGKILL)\n"
    "        while os.path.exists(f'/proc/{pid}') and 'Z' not in open(f'/proc/{pid}/stat').read().split()[2]:\n"
    "            time.sleep(0.05)\n"
    "faults.install(kill)\nraise SystemExit(main(sys.argv[1:]))\n"
)
MOVE_POINTS = (
    "move.stop.after",
    "move.copy.mid",
    "move.verify.after",
    "move.remove-users.mid",
    "move.keep-source.mid",
    "move.remove-old.mid",
    "move.create-new.mid",
    "move.recreate.created",
    "move.recreate.mid",
    "move.start.before",
)


@pytest.fixture
def private(eng: Any) -> Any:
    if eng.private is None:
        pytest.skip("kills the engine: only the private one")  # a TAMER_TEST_DOCKER_HOST engine is not ours
    try:
        yield eng
    finally:
        _engine_back(eng)


def _engine_back(eng: Any) -> None:
    """Start the private engine again if it is down. A SIGKILL leaves the pid files of dockerd and of its
    containerd behind; the killed containerd may linger as a zombie nobody reaps here, and a dockerd that
    finds its pid alive waits 15 s for it to answer: both files go first."""
    proc = eng.private.process
    if proc is not None and proc.poll() is None:
        return
    for attempt in range(3):
        (eng.private.base / "docker.pid").unlink(missing_ok=True)
        (eng.private.base / "exec" / "containerd" / "containerd.pid").unlink(missing_ok=True)
        try:
            eng.private.start()
            return
        except Exception:
            if attempt == 2:
                raise
            time.sleep(1)


def _kill_engine(eng: Any) -> None:
    proc = eng.private.process
    os.killpg(os.getpgid(proc.pid), signal.SIGKILL)
    proc.wait(timeout=30)


def _tamer(eng: Any, state: Path, *args: str, kill_at: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)}
    if kill_at is None:
        cmd = [sys.executable, "-m", "tamer", *args]
    else:
        cmd = [sys.executable, "-c", KILLING, str(eng.private.process.pid), kill_at, *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)


def _names(eng: Any) -> set[str]:
    return set(eng.docker("ps", "-a", "--format", "{{.Names}}").split())


def _where(eng: Any, name: str) -> Path:
    return Path(volume_data_path(json.loads(eng.docker("volume", "inspect", name))[0]))


def _digest(eng: Any, name: str) -> dict[str, str]:
    root = _where(eng, name)
    out: dict[str, str] = {}
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            p = os.path.join(dirpath, f)
            out[os.path.relpath(p, root)] = hashlib.sha256(Path(p).read_bytes()).hexdigest()
    return out


def _cut_short_removal(eng: Any, container: str) -> None:
    """`docker rm` that fails midway, as one the engine was killed in: the engine marks the container dead.
    (An immutable file in its writable layer stops the engine's delete; it is made mutable again after.)"""
    upper = Path(eng.docker("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", container).strip())
    pin = upper / "pinned"
    pin.write_text("x")
    subprocess.run(["chattr", "+i", str(pin)], check=True)
    try:
        assert eng.docker("rm", container, check=False) == ""
    finally:
        subprocess.run(["chattr", "-i", str(pin)], check=True)


def test_a_container_whose_layer_is_gone_is_sized_unknown_never_minus_one(eng: Any, tmp_path: Path) -> None:
    """A removal cut short can delete a container's layer and not its record; the engine then sizes it -1."""
    eng.docker("run", "--name", "s9-layerless", BUSYBOX, "true")
    upper = Path(eng.docker("inspect", "-f", "{{.GraphDriver.Data.UpperDir}}", "s9-layerless").strip())
    subprocess.run(["rm", "-rf", str(upper.parent)], check=True)
    listed = json.loads(_tamer(eng, tmp_path, "--json", "ls", "containers").stdout)["data"]["items"]
    mine = [c for c in listed if c["name"] == "s9-layerless"]
    assert mine and mine[0]["writable_size"] is None, mine
    plan = json.loads(_tamer(eng, tmp_path, "--json", "plan").stdout)["data"]
    action = [a for a in plan["actions"] if a.get("name") == "s9-layerless"]
    assert action, plan["actions"]
    assert plan["total_bytes"] >= 0 and all(
        v >= 0 for a in plan["actions"] for k, v in a.items() if "bytes" in k and isinstance(v, int)
    ), plan["actions"]


def test_a_container_left_dead_by_an_engine_killed_mid_removal_is_removed_as_planned(
    private: Any, tmp_path: Path
) -> None:
    eng = private
    eng.docker("run", "--name", "s9-dies", BUSYBOX, "true")
    saved = tmp_path / "plan.json"
    assert _tamer(eng, tmp_path, "plan", "-o", str(saved)).returncode == 0
    _cut_short_removal(eng, "s9-dies")
    _kill_engine(eng)
    _engine_back(eng)
    assert eng.docker("inspect", "-f", "{{.State.Status}}", "s9-dies").strip() == "dead"
    r = _tamer(eng, tmp_path, "--json", "clean", "--plan", str(saved), "--apply", "--yes")
    result = json.loads(r.stdout)
    steps = {s["name"]: s for s in result["data"]["steps"]}
    assert steps["s9-dies"]["status"] == "done", steps["s9-dies"]
    assert r.returncode == 0 and "s9-dies" not in _names(eng)


def test_engine_killed_mid_clean_then_the_rerun_finishes_and_counts_right(
    private: Any, tmp_path: Path
) -> None:
    eng = private
    doomed = [f"s9-ek-{i}" for i in range(8)]
    for name in doomed:
        eng.docker("create", "--name", name, BUSYBOX, "true")
    eng.docker("volume", "create", "s9-ek-data")
    eng.docker("run", "--rm", "-v", "s9-ek-data:/d", BUSYBOX, "sh", "-c", "seq 1 5000 > /d/n; echo x > /d/x")
    before = _digest(eng, "s9-ek-data")
    eng.docker("run", "-d", "--name", "s9-ek-live", "-v", "s9-ek-data:/d", BUSYBOX, "sh", "-c", STOPS_AT_ONCE)
    cut = _tamer(eng, tmp_path, "clean", "--apply", "--yes", kill_at="clean.3.after")
    assert "engine-killed-at" in cut.stderr, cut.stderr
    assert cut.returncode == 1 and "internal error" not in cut.stderr, cut
    assert "run `tamer clean --apply` again" in cut.stderr, cut.stderr
    _engine_back(eng)
    again = _tamer(eng, tmp_path, "--json", "clean", "--apply", "--yes")
    result = json.loads(again.stdout)
    assert again.returncode == 0, result
    assert result["data"]["resumed"]
    steps = result["data"]["steps"]
    assert sorted(s["name"] for s in steps) == sorted(doomed), steps  # the running one was never planned
    assert all(s["status"] in ("done", "gone") for s in steps), steps
    assert not set(doomed) & _names(eng)
    assert "s9-ek-live" in _names(eng)
    assert _digest(eng, "s9-ek-data") == before


def test_engine_killed_mid_move_then_the_rollback_it_names_restores_everything(
    private: Any, tmp_path: Path
) -> None:
    eng = private
    seed = int(os.environ.get("TAMER_S9_ENGINE_SEED", random.randrange(1 << 30)))
    kills = int(os.environ.get("TAMER_S9_ENGINE_KILLS", "1"))
    print(f"TAMER_S9_ENGINE_SEED={seed}")
    rng = random.Random(seed)
    for round_ in range(kills):
        point = rng.choice(MOVE_POINTS)
        name = f"s9-ekm-{round_}"
        eng.docker("volume", "create", name)
        eng.docker("run", "--rm", "-v", f"{name}:/d", BUSYBOX, "sh", "-c", "mkdir /d/b; seq 1 9999 > /d/b/c")
        before = _digest(eng, name)
        user = f"{name}-user"
        eng.docker("run", "-d", "--name", user, "-v", f"{name}:/d", BUSYBOX, "sh", "-c", STOPS_AT_ONCE)
        dest = tmp_path / f"dest-{round_}"
        move = ("volume", "move", name, "--to", str(dest), "--stop-users", "--apply", "--yes")
        cut = _tamer(eng, tmp_path, *move, kill_at=point)
        assert "engine-killed-at" in cut.stderr, (point, cut.stderr)
        _engine_back(eng)
        if cut.returncode == 0:  # every engine step had ended: the move is complete and says so
            assert _where(eng, name) == dest and _digest(eng, name) == before, point
            continue
        assert "internal error" not in cut.stderr and "--rollback" in cut.stderr, (point, cut)
        undone = _tamer(eng, tmp_path, "volume", "move", name, "--rollback", "--apply", "--yes")
        assert undone.returncode == 0, (point, undone)
        assert _where(eng, name) != dest and not dest.exists(), point
        assert _digest(eng, name) == before, point
        assert eng.docker("inspect", "-f", "{{.State.Running}}", user).strip() == "true", point
        assert f"{name}.pre-move" not in eng.docker("volume", "ls", "-q").split(), point
        assert not list((tmp_path / "operations" / "move").glob("*.json")), point


# restore.created fails the same way (both failed before); one point keeps the suite's time down
@pytest.mark.parametrize("point", ["restore.extract.after"])
def test_engine_killed_mid_restore_is_said_as_such_and_the_named_undo_lets_it_rerun(
    private: Any, tmp_path: Path, point: str
) -> None:
    """It was 'removed by someone else while it was restored ... nothing was restored' (an engine that does
    not answer read as a replaced volume), while the volume held the restored data and blocked a rerun."""
    eng = private
    name = "s9-ekr-" + point.split(".")[1]
    eng.docker("volume", "create", "s9-ekr-src")
    eng.docker("run", "--rm", "-v", "s9-ekr-src:/d", BUSYBOX, "sh", "-c", "mkdir /d/b; seq 1 9999 > /d/b/c")
    archive = tmp_path / "src.tar.zst"
    assert _tamer(eng, tmp_path, "volume", "backup", "s9-ekr-src", "-o", str(archive)).returncode == 0
    cut = _tamer(eng, tmp_path, "volume", "restore", str(archive), name, kill_at=point)
    assert "engine-killed-at" in cut.stderr, cut.stderr
    assert cut.returncode == 1, cut
    assert "someone else" not in cut.stderr and "nothing was restored" not in cut.stderr, cut.stderr
    assert "engine went away" in cut.stderr and f"docker volume rm {name}" in cut.stderr, cut.stderr
    _engine_back(eng)
    eng.docker("volume", "rm", name)  # as the message says
    again = _tamer(eng, tmp_path, "volume", "restore", str(archive), name)
    assert again.returncode == 0, again
    assert _digest(eng, name) == _digest(eng, "s9-ekr-src")


def test_engine_killed_mid_run_says_what_may_be_left_and_the_rerun_after_it_works(
    private: Any, tmp_path: Path
) -> None:
    """It said only 'no Docker engine answered ... start one'; the rerun then met 'name already in use'."""
    eng = private
    cut = _tamer(
        eng, tmp_path, "run", "tamer-test/mongo-standin:1", "--name", "s9-ekrun", kill_at="run.created"
    )
    assert "engine-killed-at" in cut.stderr, cut.stderr
    assert cut.returncode == 1 and "internal error" not in cut.stderr, cut
    assert "docker rm -f s9-ekrun; docker volume rm s9-ekrun-data-" in cut.stderr, cut.stderr
    _engine_back(eng)
    assert "s9-ekrun" in _names(eng)  # what the message warned of
    eng.docker("rm", "-f", "s9-ekrun")
    left = [v for v in eng.docker("volume", "ls", "-q").split() if v.startswith("s9-ekrun-")]
    assert sorted(left) == ["s9-ekrun-data-configdb", "s9-ekrun-data-db"], left
    eng.docker("volume", "rm", *left)
    again = _tamer(eng, tmp_path, "run", "tamer-test/mongo-standin:1", "--name", "s9-ekrun")
    assert again.returncode == 0, again
    assert eng.docker("inspect", "-f", "{{.State.Running}}", "s9-ekrun").strip() == "true"
