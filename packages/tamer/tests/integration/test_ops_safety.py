"""Issue 10 regressions on the private engine: shared folders never deleted, names never merged, homes new and
unshared and on a disk, no copy of live data, non-root refused before anything changes, adopt journaled."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.errors import VolumeInUse
from tamer.operation import faults
from tamer.sandbox import build_busybox_image
from tamer.volumes import guard
from tamer.volumes.move import apply_move, plan_move

MONGO = "tamer-test/mongo-standin:1"
TWINS = "tamer-test/twins:1"  # VOLUME /data/db and /data-db: one slug, two places


def inspect(eng: Any, name: str) -> dict[str, Any]:
    return json.loads(eng.docker("inspect", name))[0]


def volumes(eng: Any) -> set[str]:
    return set(eng.docker("volume", "ls", "-q").split())


@pytest.fixture
def state(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    faults.clear()
    yield {"TAMER_STATE_DIR": str(tmp_path / "state")}
    faults.clear()


@pytest.fixture
def twins(eng: Any) -> str:
    build_busybox_image(
        eng.engine,
        TWINS,
        volumes=("/data/db", "/data-db"),
        cmd=("sh", "-c", "trap 'exit 0' TERM; while true; do sleep 1; done"),
    )
    return TWINS


# -- failure 4: --purge-source never deletes a folder someone else uses -----------------------------------
@pytest.fixture
def shared_folder(eng: Any, tmp_path: Path) -> Iterator[Path]:
    """Volumes sh_a and sh_b both bind the same folder; sh_b has a running container."""
    folder = tmp_path / "shared"
    folder.mkdir()
    (folder / "precious").write_text("b's data")
    opts = ("--opt", "type=none", "--opt", "o=bind", "--opt", f"device={folder}")
    eng.docker("volume", "create", *opts, "sh_a")
    eng.docker("volume", "create", *opts, "sh_b")
    eng.docker("run", "-d", "--name", "sh_b_user", "-v", "sh_b:/d", MONGO)
    yield folder


def test_purge_source_refuses_a_folder_another_volume_uses(
    eng: Any, shared_folder: Path, tmp_path: Path, state: dict[str, str]
) -> None:
    dest = tmp_path / "disk2" / "sh_a"
    r = eng.tamer(
        "volume", "move", "sh_a", "--to", str(dest), "--purge-source", "--apply", "--yes", env=state
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert (
        "--purge-source refused" in r.stderr
        and "volume sh_b" in r.stderr
        and "nothing was changed" in r.stderr
    )
    assert (shared_folder / "precious").read_text() == "b's data" and not dest.exists()
    # without --purge-source the move happens and the folder stays for sh_b
    r = eng.tamer("volume", "move", "sh_a", "--to", str(dest), "--apply", "--yes", env=state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert (shared_folder / "precious").read_text() == "b's data" and (dest / "precious").exists()
    assert eng.docker("exec", "sh_b_user", "cat", "/d/precious") == "b's data"


def test_purge_rechecks_at_the_moment_of_deletion(eng: Any, tmp_path: Path, state: dict[str, str]) -> None:
    """The folder was unshared when planned; a container bind-mounted a child of it meanwhile: not deleted."""
    folder = tmp_path / "src"
    (folder / "sub").mkdir(parents=True)
    (folder / "sub" / "f").write_text("x")
    eng.docker(
        "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={folder}", "pg_a"
    )
    dest = tmp_path / "disk2" / "pg_a"
    plan = plan_move(eng.engine, "pg_a", str(dest), stop_users=False, purge_source=True)

    def meanwhile(point: str, ctx: dict[str, Any]) -> None:
        if point == "move.commit.before":
            eng.docker("run", "-d", "--name", "pg_other", "-v", f"{folder / 'sub'}:/x", MONGO)

    faults.install(meanwhile)
    result = apply_move(eng.engine, plan, purge_source=True)
    assert result.source_kept == str(folder) and "pg_other" in result.warnings[0], result
    assert (folder / "sub" / "f").read_text() == "x"
    assert eng.docker("exec", "pg_other", "cat", "/x/f") == "x"


def test_move_of_a_default_volume_whose_folder_another_volume_binds_is_refused(
    eng: Any, tmp_path: Path, state: dict[str, str]
) -> None:
    eng.docker("volume", "create", "df_a")
    mp = eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "df_a").strip()
    Path(mp, "f").write_text("x")
    eng.docker("volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={mp}", "df_b")
    r = eng.tamer("volume", "move", "df_a", "--to", str(tmp_path / "d2"), "--apply", "--yes", env=state)
    assert r.returncode == 1 and "volume df_b" in r.stderr and "nothing was changed" in r.stderr, r.stderr
    assert Path(mp, "f").read_text() == "x" and not (tmp_path / "d2").exists()


# -- item 4: homes are new or empty, unshared, and on a disk ---------------------------------------------
def test_create_at_a_folder_with_data_or_used_by_another_volume_is_refused(eng: Any, tmp_path: Path) -> None:
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("mine")
    r = eng.tamer("volume", "create", "home_a", "--at", str(full))
    assert r.returncode == 2 and "not empty" in r.stderr, r.stderr
    r = eng.tamer("volume", "create", "home_b", "--at", str(tmp_path / "one"))
    assert r.returncode == 0, r.stderr
    r = eng.tamer("volume", "create", "home_c", "--at", str(tmp_path / "one"))
    assert r.returncode == 2 and "volume home_b" in r.stderr, r.stderr
    r = eng.tamer("volume", "create", "home_d", "--at", str(tmp_path / "one" / "inner"))
    assert r.returncode == 2 and "volume home_b" in r.stderr, "a child of another volume's folder"
    r = eng.tamer("volume", "create", "home_e", "--at", str(tmp_path))
    assert r.returncode == 2, "a parent of another volume's folder"
    assert not volumes(eng) & {"home_a", "home_c", "home_d", "home_e"}
    assert (full / "x").read_text() == "mine"


@pytest.fixture
def ramdisk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "ram"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_move_to_tmpfs_needs_an_explicit_flag(eng: Any, ramdisk: Path, state: dict[str, str]) -> None:
    eng.docker("volume", "create", "tmp_v")
    r = eng.tamer("volume", "move", "tmp_v", "--to", str(ramdisk / "v"), "--apply", "--yes", env=state)
    assert r.returncode == 2 and "tmpfs" in r.stderr and "reboot" in r.stderr and "--allow-tmpfs" in r.stderr
    assert not (ramdisk / "v").exists()
    r = eng.tamer("volume", "move", "tmp_v", "--to", str(ramdisk / "v"), "--allow-tmpfs", "--json", env=state)
    assert r.returncode == 0
    assert any("lost at the next reboot" in n for n in json.loads(r.stdout)["data"]["notes"])
    r = eng.tamer("volume", "create", "tmp_w", "--at", str(ramdisk / "w"))
    assert r.returncode == 2 and "tmpfs" in r.stderr


# -- failure 7: two container paths never share a volume ------------------------------------------------
def test_run_refuses_two_declared_paths_on_one_name(eng: Any, twins: str, tmp_path: Path) -> None:
    before = volumes(eng)
    r = eng.tamer("run", twins, "--name", "tw_run")
    assert r.returncode == 2, r.stdout + r.stderr
    assert "/data/db" in r.stderr and "/data-db" in r.stderr and "--name-for" in r.stderr
    assert volumes(eng) == before
    r = eng.tamer("run", twins, "--name", "tw_run", "--name-for", "/data-db=tw_run-data-db2")
    assert r.returncode == 0, r.stderr
    mounts = {m["Destination"]: m["Name"] for m in inspect(eng, "tw_run")["Mounts"]}
    assert mounts == {"/data/db": "tw_run-data-db", "/data-db": "tw_run-data-db2"}


def test_run_never_reuses_a_volume_made_for_something_else(eng: Any) -> None:
    eng.docker(
        "volume",
        "create",
        "--label",
        "io.tamer.for-container=other",
        "--label",
        "io.tamer.container-path=/data/db",
        "mine-data-db",
    )
    r = eng.tamer("run", MONGO, "--name", "mine")
    assert (
        r.returncode == 2
        and "made for container other:/data/db" in r.stderr
        and "-v mine-data-db:/data/db" in r.stderr
    ), r.stderr
    eng.docker("volume", "create", "plain-data-db")
    r = eng.tamer("run", MONGO, "--name", "plain")
    assert r.returncode == 2 and "not made by tamer run" in r.stderr


def test_adopt_keeps_two_paths_apart(eng: Any, twins: str, state: dict[str, str]) -> None:
    eng.docker("run", "-d", "--name", "tw_ad", twins)
    eng.docker("exec", "tw_ad", "sh", "-c", "echo one > /data/db/a; echo two > /data-db/a")
    r = eng.tamer("adopt", "tw_ad", "--apply", "--yes", env=state)
    assert r.returncode == 2 and "--name-for" in r.stderr, r.stdout + r.stderr
    r = eng.tamer("adopt", "tw_ad", "--name-for", "/data-db=tw_ad-datadb", "--apply", "--yes", env=state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert eng.docker("exec", "tw_ad", "cat", "/data/db/a", "/data-db/a") == "one\ntwo\n"
    mounts = {m["Destination"]: m["Name"] for m in inspect(eng, "tw_ad")["Mounts"]}
    assert mounts == {"/data/db": "tw_ad-data-db", "/data-db": "tw_ad-datadb"}


def test_adopt_refuses_when_the_name_is_taken_meanwhile(eng: Any, state: dict[str, str]) -> None:
    """The engine's volume create is idempotent: a volume made between plan and apply would be reused and
    the data merged. The point of action re-checks."""
    from tamer.volumes.adopt import apply_adopt, plan_adopt

    eng.docker("run", "-d", "--name", "late", MONGO)
    plan = plan_adopt(eng.engine, "late")
    eng.docker("volume", "create", "late-data-configdb")
    eng.docker(
        "run", "--rm", "-v", "late-data-configdb:/x", "tamer-test/busybox:1", "sh", "-c", "echo theirs > /x/t"
    )
    with pytest.raises(Exception, match="exists now"):
        apply_adopt(eng.engine, plan)
    out = eng.docker("run", "--rm", "-v", "late-data-configdb:/x", "tamer-test/busybox:1", "ls", "/x")
    assert out.split() == ["t"], "nothing merged into someone else's volume"
    assert inspect(eng, "late")["State"]["Running"]
    assert all(len(m["Name"]) == 64 for m in inspect(eng, "late")["Mounts"])


# -- item 7: never copy live data and call it verified --------------------------------------------------
def test_move_refuses_to_copy_when_a_user_started_meanwhile(
    eng: Any, tmp_path: Path, state: dict[str, str]
) -> None:
    eng.docker("volume", "create", "live_v")
    eng.docker("create", "--name", "live_user", "-v", "live_v:/data/db", MONGO)
    plan = plan_move(eng.engine, "live_v", str(tmp_path / "d2"), stop_users=False)

    def starts(point: str, ctx: dict[str, Any]) -> None:
        if point == "move.copy.before":
            eng.docker("start", "live_user")

    faults.install(starts)
    with pytest.raises(VolumeInUse, match="torn"):
        apply_move(eng.engine, plan)
    assert not (tmp_path / "d2").exists()
    assert not json.loads(eng.docker("volume", "inspect", "live_v"))[0]["Options"]


# -- item 6: what needs root, said before anything changes -----------------------------------------------
def test_non_root_is_told_what_needs_root(tmp_path: Path) -> None:
    with pytest.raises(Exception, match=r"needs root.*uid 1000.*sudo"):
        guard.require_data_access(str(tmp_path), "volume move", uid=1000, access=lambda p, m: False)
    closed = tmp_path / "data-root"
    closed.mkdir(mode=0o700)
    code = textwrap.dedent(f"""
        from tamer.volumes.guard import require_data_access
        try:
            require_data_access({str(closed)!r}, "volume restore")
        except Exception as exc:
            print(exc)
        else:
            print("no error")
        """)
    proc = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**os.environ, "HOME": "/nonexistent"},
    )
    if "Permission denied" in proc.stderr and "tamer" in proc.stderr:
        pytest.skip(f"user nobody cannot import tamer from this checkout: {proc.stderr[-200:]}")
    assert (
        "needs root" in proc.stdout and "uid 65534" in proc.stdout and "nothing was changed" in proc.stdout
    ), proc.stdout + proc.stderr


# -- a kill during `docker stop`: the engine finishes the stop after tamer is gone ------------------------
STUBBORN = ["sh", "-c", "trap '' TERM; while true; do sleep 1; done"]  # ignores SIGTERM: a stop takes 10 s


@pytest.mark.parametrize("command", ["adopt", "move"])
def test_rollback_after_a_kill_during_stop_leaves_the_service_running(
    eng: Any, tmp_path: Path, state: dict[str, str], command: str
) -> None:
    """Regression: the rollback found the container still running (the engine was mid-stop), did not start
    it, and the stop then finished: service down after a "successful" rollback."""
    faulty = Path(__file__).parent.parent / "faulty_tamer.py"
    if command == "adopt":
        eng.docker("run", "-d", "--name", "stub", MONGO, *STUBBORN)
        args = ["adopt", "stub", "--apply", "--yes"]
        rollback = ["adopt", "stub", "--rollback", "--apply", "--yes"]
        point = "adopt.stop.before"
    else:
        eng.docker("volume", "create", "stub_v")
        eng.docker("run", "-d", "--name", "stub", "-v", "stub_v:/data/db", MONGO, *STUBBORN)
        dest = tmp_path / "d2"
        args = ["volume", "move", "stub_v", "--to", str(dest), "--stop-users", "--apply", "--yes"]
        rollback = ["volume", "move", "stub_v", "--to", str(dest), "--rollback", "--apply", "--yes"]
        point = "move.stop.before"
    proc = subprocess.Popen(
        [sys.executable, str(faulty), "-", *args],
        stderr=subprocess.PIPE,
        text=True,
        stdout=subprocess.DEVNULL,
        env={**os.environ, **state, "DOCKER_HOST": eng.host},
    )
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.strip() == f"fault-point: {point}":
            break
    time.sleep(1.0)  # the engine has sent SIGTERM and waits up to 10 s before SIGKILL
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert inspect(eng, "stub")["State"]["Running"], "still stopping"
    r = eng.tamer(*rollback, env=state)
    assert r.returncode == 0, r.stdout + r.stderr
    time.sleep(11)  # past the engine's stop timeout
    assert inspect(eng, "stub")["State"]["Running"], "the service is down after the rollback"


@pytest.mark.parametrize(
    "args",
    [
        ["volume", "move", "nr_v", "--to", "DEST", "--apply", "--yes"],
        ["adopt", "nr_c", "--apply", "--yes"],
        ["volume", "backup", "nr_v", "-o", "DEST.tar.zst"],
        ["volume", "restore", "ARCHIVE", "nr_new"],
    ],
    ids=["move", "adopt", "backup", "restore"],
)
def test_a_docker_group_user_is_told_what_needs_root(eng: Any, tmp_path: Path, args: list[str]) -> None:
    """A user who may use the engine's socket (here: its group) but not its root-owned data-root gets, before
    anything changes, an error saying what needs root and why."""
    eng.docker("volume", "create", "nr_v")
    eng.docker("create", "--name", "nr_c", MONGO)
    archive = tmp_path / "a.tar.zst"
    r = eng.tamer("volume", "backup", "nr_v", "-o", str(archive))
    assert r.returncode == 0, r.stderr
    os.chmod(tmp_path, 0o777)
    args = [a.replace("DEST", str(tmp_path / "dest")).replace("ARCHIVE", str(archive)) for a in args]
    before = (sorted(volumes(eng)), eng.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}"))
    sock_gid = os.stat(eng.host.removeprefix("unix://")).st_gid
    home = Path(
        tempfile.mkdtemp(prefix="tamer-nobody-")
    )  # a state dir this user can write, as its own would be
    os.chmod(home, 0o777)
    proc = subprocess.run(
        [
            "setpriv",
            "--reuid=65534",
            f"--regid={sock_gid}",
            "--clear-groups",
            sys.executable,
            "-m",
            "tamer",
            *args,
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(home / "st"), "HOME": str(home)},
    )
    shutil.rmtree(home)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "needs root" in proc.stderr and "data-root" in proc.stderr and "sudo" in proc.stderr, proc.stderr
    assert (sorted(volumes(eng)), eng.docker("ps", "-a", "--format", "{{.Names}} {{.Status}}")) == before
    assert not (tmp_path / "dest").exists() and not (tmp_path / "dest.tar.zst").exists()


def test_two_operations_at_once_the_second_is_told_who_holds_the_lock(
    eng: Any, tmp_path: Path, state: dict[str, str]
) -> None:
    from tamer.operation import operation_lock

    eng.docker("volume", "create", "lk_v")
    with operation_lock("volume backup something"):
        r = eng.tamer("volume", "move", "lk_v", "--to", str(tmp_path / "d2"), "--apply", "--yes", env=state)
    assert r.returncode == 1, r.stdout + r.stderr
    assert f"pid {os.getpid()}" in r.stderr and "tamer volume backup something" in r.stderr, r.stderr
    assert not (tmp_path / "d2").exists()
    assert not json.loads(eng.docker("volume", "inspect", "lk_v"))[0]["Options"]


def test_restore_at_a_folder_another_volume_uses_is_refused(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "rt_src")
    archive = tmp_path / "rt.tar.zst"
    assert eng.tamer("volume", "backup", "rt_src", "-o", str(archive)).returncode == 0
    r = eng.tamer("volume", "create", "rt_other", "--at", str(tmp_path / "home"))
    assert r.returncode == 0, r.stderr
    r = eng.tamer("volume", "restore", str(archive), "rt_new", "--at", str(tmp_path / "home"))
    assert r.returncode == 2 and "volume rt_other" in r.stderr, r.stdout + r.stderr
    assert "rt_new" not in volumes(eng)
