"""`tamer adopt` on the private engine: the essay's `docker run mongo` without -v, fixed after the fact."""

from __future__ import annotations

import json
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.errors import NotEnoughSpace
from tamer.volumes.adopt import apply_adopt, plan_adopt

MONGO = "tamer-test/mongo-standin:1"


def container(eng: Any, name: str) -> dict[str, Any]:
    return json.loads(eng.docker("inspect", name))[0]


def mounts(eng: Any, name: str) -> dict[str, str]:
    return {m["Destination"]: m["Name"] for m in container(eng, name)["Mounts"]}


def test_adopt_names_anonymous_volumes_keeping_data_and_config(eng: Any, tmp_path: Path) -> None:
    eng.docker("run", "-d", "--name", "adopt_me", "-e", "A=1", "--restart", "always", "-l", "team=db", MONGO)
    eng.docker(
        "exec",
        "adopt_me",
        "sh",
        "-c",
        "echo rec > /data/db/r; echo cfg > /data/configdb/c; chown 999:999 /data/db/r",
    )
    anon = mounts(eng, "adopt_me")
    assert all(re.fullmatch(r"[0-9a-f]{64}", v) for v in anon.values())
    before = container(eng, "adopt_me")

    r = eng.tamer("adopt", "adopt_me")
    assert r.returncode == 0 and "preview" in r.stdout and "adopt_me-data-db" in r.stdout
    assert mounts(eng, "adopt_me") == anon, "a preview changes nothing"

    r = eng.tamer("adopt", "adopt_me", "--at", str(tmp_path / "big"), "--apply", "--yes", "--json")
    assert r.returncode == 0, r.stdout + r.stderr
    assert json.loads(r.stdout)["data"]["applied"] is True
    assert mounts(eng, "adopt_me") == {
        "/data/db": "adopt_me-data-db",
        "/data/configdb": "adopt_me-data-configdb",
    }
    after = container(eng, "adopt_me")
    assert after["State"]["Running"]
    for key in ("Env", "Cmd", "Labels", "Image"):
        assert after["Config"][key] == before["Config"][key], key
    assert after["HostConfig"]["RestartPolicy"] == before["HostConfig"]["RestartPolicy"]
    assert eng.docker("exec", "adopt_me", "cat", "/data/db/r", "/data/configdb/c") == "rec\ncfg\n"
    assert eng.docker("exec", "adopt_me", "stat", "-c", "%u:%g", "/data/db/r").strip() == "999:999"
    assert (tmp_path / "big" / "adopt_me-data-db" / "r").read_text() == "rec\n"
    assert set(anon.values()) <= set(eng.docker("volume", "ls", "-q").split()), "anonymous volumes are kept"

    r = eng.tamer("adopt", "adopt_me", "--apply", "--yes")
    assert r.returncode == 0 and "nothing to adopt" in r.stdout


def test_adopt_refuses_an_existing_target_name_and_unknown_container(eng: Any) -> None:
    eng.docker("create", "--name", "adopt_two", MONGO)
    eng.docker("volume", "create", "adopt_two-data-db")
    r = eng.tamer("adopt", "adopt_two", "--apply", "--yes")
    assert r.returncode == 2 and "exists already" in r.stderr
    r = eng.tamer("adopt", "no_such_container")
    assert r.returncode == 1 and "not found" in r.stderr


@pytest.fixture
def full_adoptee(eng: Any, tmp_path: Path) -> Iterator[tuple[dict[str, str], Path]]:
    eng.docker("run", "-d", "--name", "adopt_full", MONGO)
    eng.docker("exec", "adopt_full", "dd", "if=/dev/urandom", "of=/data/db/big", "bs=1024", "count=3000")
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield mounts(eng, "adopt_full"), disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_adopt_refuses_when_the_place_is_too_small(
    eng: Any, full_adoptee: tuple[dict[str, str], Path]
) -> None:
    anon, disk = full_adoptee
    vols = set(eng.docker("volume", "ls", "-q").split())
    r = eng.tamer("adopt", "adopt_full", "--at", str(disk), "--allow-tmpfs", "--apply", "--yes")
    assert r.returncode == 1 and "nothing was changed" in r.stderr, r.stdout + r.stderr
    assert set(eng.docker("volume", "ls", "-q").split()) == vols
    assert mounts(eng, "adopt_full") == anon and container(eng, "adopt_full")["State"]["Running"]


def test_adopt_rolls_back_when_the_copy_fails(
    eng: Any, full_adoptee: tuple[dict[str, str], Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The place looked big enough when planned, then filled up mid-copy: everything is put back."""
    anon, disk = full_adoptee
    from tamer.volumes import copy as cp

    monkeypatch.setattr(cp, "measure", lambda root: cp.TreeSize(1, 1, 1, 1))
    vols = set(eng.docker("volume", "ls", "-q").split())
    plan = plan_adopt(eng.engine, "adopt_full", at=str(disk), allow_volatile=True)
    with pytest.raises(NotEnoughSpace, match="rolled back"):
        apply_adopt(eng.engine, plan)
    assert set(eng.docker("volume", "ls", "-q").split()) == vols
    assert mounts(eng, "adopt_full") == anon and container(eng, "adopt_full")["State"]["Running"]
    assert not list(disk.iterdir())


def test_adopt_a_host_network_container(eng: Any) -> None:
    """Re-created on the host's network, with its hostname left to the engine (which fills it from the host)."""
    eng.docker("run", "-d", "--name", "adopt_host", "--network", "host", MONGO)
    r = eng.tamer("adopt", "adopt_host", "--apply", "--yes")
    assert r.returncode == 0, r.stdout + r.stderr
    c = container(eng, "adopt_host")
    assert c["State"]["Running"] and c["HostConfig"]["NetworkMode"] == "host"
    assert mounts(eng, "adopt_host") == {
        "/data/db": "adopt_host-data-db",
        "/data/configdb": "adopt_host-data-configdb",
    }


ADOPT_POINTS = [
    f"adopt.{s}.mid" for s in ("stop", "create", "copy", "verify", "park", "recreate", "start", "remove-old")
] + ["adopt.copy.started", "adopt.recreate.created"]


def _names(eng: Any) -> list[str]:
    return eng.docker("ps", "-a", "--format", "{{.Names}}").split()


@pytest.mark.parametrize("then", ["rerun", "rollback"])
@pytest.mark.parametrize("point", ADOPT_POINTS)
def test_killed_adopt_then_rerun_or_rollback(eng: Any, tmp_path: Path, point: str, then: str) -> None:
    """Regression (issue 10): a kill midway left NAME-pre-adopt-xxxx behind with no way back. Now every step
    is journaled: a rerun finishes, --rollback puts the original back, running, with its anonymous volumes."""
    state = {"TAMER_STATE_DIR": str(tmp_path / "state")}
    eng.docker("run", "-d", "--name", "adk", MONGO)
    eng.docker(
        "exec", "adk", "sh", "-c", "head -c 300000 /dev/urandom > /data/db/r; echo cfg > /data/configdb/c"
    )
    want = eng.docker("exec", "adk", "sh", "-c", "md5sum /data/db/r /data/configdb/c")
    anon = mounts(eng, "adk")
    vols_before = set(eng.docker("volume", "ls", "-q").split())
    r = eng.tamer("adopt", "adk", "--at", str(tmp_path / "big"), "--apply", "--yes", env=state, fault=point)
    assert r.returncode == 137 and f"fault-kill: {point}" in r.stderr, r.stdout + r.stderr
    if then == "rerun":
        r = eng.tamer("adopt", "adk", "--apply", "--yes", env=state)
        assert r.returncode == 0, r.stdout + r.stderr
        assert mounts(eng, "adk") == {"/data/db": "adk-data-db", "/data/configdb": "adk-data-configdb"}
    else:
        r = eng.tamer("adopt", "adk", "--rollback", env=state)
        assert r.returncode == 0 and "unfinished" in r.stdout, r.stdout + r.stderr
        r = eng.tamer("adopt", "adk", "--rollback", "--apply", "--yes", env=state)
        assert r.returncode == 0, r.stdout + r.stderr
        assert mounts(eng, "adk") == anon
        assert set(eng.docker("volume", "ls", "-q").split()) == vols_before
        assert not (tmp_path / "big" / "adk-data-db").exists()
    assert container(eng, "adk")["State"]["Running"]
    assert eng.docker("exec", "adk", "sh", "-c", "md5sum /data/db/r /data/configdb/c") == want
    assert [n for n in _names(eng) if n.startswith("adk")] == ["adk"], "no parked container left behind"
    assert not list((tmp_path / "state").rglob("*.json")), "no journal left"
