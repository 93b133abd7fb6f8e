"""`tamer run` and the essay's Mongo recipe, end to end on the private engine (stand-in image, same VOLUMEs)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

MONGO = "tamer-test/mongo-standin:1"


def inspect(eng: Any, name: str) -> dict[str, Any]:
    return json.loads(eng.docker("inspect", name))[0]


def volumes(eng: Any) -> set[str]:
    return set(eng.docker("volume", "ls", "-q").split())


def test_mongo_recipe_end_to_end(eng: Any, tmp_path: Path) -> None:
    """README recipe: volumes on the big disk, run with explicit names, data outlives the container."""
    hdd = tmp_path / "HDD" / "docker_volumes"
    before = volumes(eng)
    for vol in ("mongo_data", "mongo_config"):
        r = eng.tamer("volume", "create", vol, "--at", str(hdd / vol))
        assert r.returncode == 0, r.stderr
    run = (
        "run",
        MONGO,
        "--name",
        "mongo_container",
        "-p",
        "27017:27017",
        "-v",
        "mongo_data:/data/db",
        "-v",
        "mongo_config:/data/configdb",
    )
    r = eng.tamer(*run)
    assert r.returncode == 0, r.stderr
    info = inspect(eng, "mongo_container")
    assert info["State"]["Running"]
    assert info["HostConfig"]["RestartPolicy"]["Name"] == "unless-stopped"
    assert info["HostConfig"]["LogConfig"] == {
        "Type": "json-file",
        "Config": {"max-file": "3", "max-size": "10m"},
    }
    assert {m["Destination"]: m["Name"] for m in info["Mounts"]} == {
        "/data/db": "mongo_data",
        "/data/configdb": "mongo_config",
    }
    assert volumes(eng) - before == {"mongo_data", "mongo_config"}, "no anonymous volume was made"

    eng.docker(
        "exec",
        "mongo_container",
        "sh",
        "-c",
        "echo record-1 > /data/db/collection && echo cfg > /data/configdb/cfg",
    )
    assert (hdd / "mongo_data" / "collection").read_text() == "record-1\n", "data lands on the big disk"
    eng.docker("stop", "-t", "1", "mongo_container")
    eng.docker("restart", "-t", "1", "mongo_container")
    assert eng.docker("exec", "mongo_container", "cat", "/data/db/collection") == "record-1\n"
    eng.docker("rm", "-f", "mongo_container")
    assert {"mongo_data", "mongo_config"} <= volumes(eng)

    r = eng.tamer(*run)
    assert r.returncode == 0, r.stderr
    assert (
        eng.docker("exec", "mongo_container", "cat", "/data/db/collection", "/data/configdb/cfg")
        == "record-1\ncfg\n"
    )


def test_run_names_every_declared_volume_and_places_it(eng: Any, tmp_path: Path) -> None:
    before = volumes(eng)
    r = eng.tamer("run", MONGO, "--name", "mongo2", "--at", str(tmp_path / "big"), "--json")
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)
    assert env["status"] == "ok"
    assert volumes(eng) - before == {"mongo2-data-db", "mongo2-data-configdb"}
    opts = json.loads(eng.docker("volume", "inspect", "mongo2-data-db"))[0]["Options"]
    assert opts == {"type": "none", "o": "bind", "device": str(tmp_path / "big" / "mongo2-data-db")}
    eng.docker("exec", "mongo2", "sh", "-c", "echo x > /data/db/f")
    assert (tmp_path / "big" / "mongo2-data-db" / "f").exists()


def test_run_command_after_dashes_and_bare_path_is_named(eng: Any) -> None:
    r = eng.tamer(
        "run",
        "tamer-test/busybox:1",
        "--name",
        "bb_cmd",
        "-v",
        "/scratch",
        "--restart",
        "no",
        "--no-log-rotation",
        "--",
        "sh",
        "-c",
        "echo hi > /scratch/f; sleep 60",
    )
    assert r.returncode == 0, r.stderr
    assert "anonymous" in r.stdout and "bb_cmd-scratch" in r.stdout
    info = inspect(eng, "bb_cmd")
    assert info["Config"]["Cmd"] == ["sh", "-c", "echo hi > /scratch/f; sleep 60"]
    assert [m["Name"] for m in info["Mounts"]] == ["bb_cmd-scratch"]
    assert info["HostConfig"]["RestartPolicy"]["Name"] in ("", "no")


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (
            ["-v", "mongo_data:/data/db", "-v", "mongo_config/data/configdb"],
            "did you mean -v mongo_config:/data/configdb",
        ),
        (["-v", "mongo_data:data/db"], "not absolute"),
        (["-v", "./here:/data/db"], "relative host path"),
        (["-v", "mongo_data:/data/db:rx"], "unknown mode"),
        (["-v", "a1:/data/db", "-v", "b1:/data/db"], "mounted twice"),
        (["-p", "27017:abc"], "expected [IP:][HOSTPORT:]CONTAINERPORT"),
        (["--restart", "sometimes"], "--restart sometimes"),
        (["--at", "relative/dir"], "relative"),
    ],
    ids=[
        "essay-typo",
        "relative-target",
        "relative-source",
        "bad-mode",
        "twice",
        "bad-port",
        "bad-restart",
        "relative-at",
    ],
)
def test_run_refuses_mistakes_before_creating_anything(eng: Any, args: list[str], says: str) -> None:
    before = volumes(eng)
    r = eng.tamer("run", MONGO, "--name", "mongo_bad", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert says in r.stderr, r.stderr
    assert volumes(eng) == before
    assert "mongo_bad" not in eng.docker("ps", "-a", "--format", "{{.Names}}").split()


def test_run_unknown_image_and_missing_name(eng: Any) -> None:
    r = eng.tamer("run", "nope/nothing:1", "--name", "x1")
    assert r.returncode == 2 and "not on this engine" in r.stderr
    r = eng.tamer("run", MONGO, "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["status"] == "usage"
