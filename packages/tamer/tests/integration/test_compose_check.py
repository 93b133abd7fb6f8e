"""tamer compose check against the private engine: the essay's Mongo (a stand-in image declaring VOLUME
/data/db and /data/configdb) is flagged, --fix names both, the copy checks clean, and containers created
from the copy's mounts get no anonymous volume (the docker CLI is the oracle; compose is not installed)."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from tamer.compose.files import read_compose
from tamer.compose.model import build_model

MONGO = "tamer-test/mongo-standin:1"
BUSYBOX = "tamer-test/busybox:1"

ESSAY = f"""\
# The essay's Mongo: the image declares /data/db and /data/configdb
services:
  mongo:
    image: {MONGO}   # stands in for `mongo`
    container_name: mongo_container
    ports:
      - "27017:27017"
    restart: unless-stopped
    logging:
      driver: json-file
      options:
        max-size: "10m"
        max-file: "3"
"""


def _check(eng: Any, *args: str) -> tuple[int, dict[str, Any]]:
    proc = eng.tamer("compose", "check", *args, "--json")
    return proc.returncode, json.loads(proc.stdout)


def test_the_essay_s_mongo_is_flagged_fixed_and_the_fix_makes_no_anonymous_volume(
    eng: Any, tmp_path: Path
) -> None:
    folder = tmp_path / "essay"
    folder.mkdir()
    path = folder / "compose.yaml"
    path.write_text(ESSAY)
    code, doc = _check(eng, str(path))
    assert code == 1 and doc["status"] == "error"
    assert [(f["code"], f["path"]) for f in doc["data"]["findings"]] == [
        ("anonymous-volume", "/data/configdb"),
        ("anonymous-volume", "/data/db"),
    ]
    declared = json.loads(eng.docker("image", "inspect", "--format", "{{json .Config.Volumes}}", MONGO))
    assert doc["data"]["images"][MONGO]["volumes"] == sorted(declared)  # what the docker CLI says
    assert doc["data"]["data_root"] == eng.docker("info", "--format", "{{.DockerRootDir}}").strip()

    proc = eng.tamer("compose", "check", str(path), "--fix")
    assert proc.returncode == 1, proc.stderr
    fixed = folder / "compose.tamer.yaml"
    assert path.read_text() == ESSAY  # the original is never touched
    assert "+      - mongo_data_db:/data/db" in proc.stdout and "+  mongo_data_db:" in proc.stdout
    code, doc = _check(eng, str(fixed))
    assert code == 0 and doc["data"]["findings"] == [] and doc["status"] == "ok", doc
    assert "# stands in for `mongo`" in fixed.read_text()

    # the copy re-parses and maps every VOLUME to a named volume; create the container as compose would
    source = read_compose(fixed)
    model = build_model(source.data, source.env, source.project_dir)
    (mongo,) = model.services
    named = {m.target: model.volumes[str(m.source)].engine_name for m in mongo.mounts if m.kind == "volume"}
    assert sorted(named) == sorted(declared)
    args = [arg for target, name in named.items() for arg in ("-v", f"{name}:{target}")]
    cid = eng.docker("create", *args, MONGO).strip()
    mounts = json.loads(eng.docker("inspect", "--format", "{{json .Mounts}}", cid))
    assert sorted((m["Name"], m["Destination"]) for m in mounts) == sorted((n, t) for t, n in named.items())
    assert not any(re.fullmatch(r"[0-9a-f]{64}", m["Name"]) for m in mounts)  # no anonymous volume

    # running --fix again replaces its own earlier copy; nothing left to name in the copy itself
    assert eng.tamer("compose", "check", str(path), "--fix").returncode == 1
    proc = eng.tamer("compose", "check", str(fixed), "--fix")
    assert proc.returncode == 0 and "nothing to name" in proc.stdout
    assert not (folder / "compose.tamer.tamer.yaml").exists()


def test_without_the_fix_docker_makes_the_anonymous_volumes_the_check_warned_of(
    eng: Any, tmp_path: Path
) -> None:
    """The finding is real: the same service created without mounts gets exactly those anonymous volumes."""
    (tmp_path / "compose.yaml").write_text(ESSAY)
    code, doc = _check(eng, str(tmp_path))
    flagged = sorted(f["path"] for f in doc["data"]["findings"] if f["code"] == "anonymous-volume")
    cid = eng.docker("create", MONGO).strip()
    mounts = json.loads(eng.docker("inspect", "--format", "{{json .Mounts}}", cid))
    anonymous = sorted(m["Destination"] for m in mounts if re.fullmatch(r"[0-9a-f]{64}", m["Name"]))
    assert code == 1 and flagged == anonymous == ["/data/configdb", "/data/db"]


def test_missing_images_binds_into_the_data_root_and_the_rest(eng: Any, tmp_path: Path) -> None:
    text = f"""\
services:
  web:
    image: tamer-test/not-here:1
    restart: always
    container_name: web
    logging: {{options: {{max-size: 1m}}}}
  peek:
    image: {BUSYBOX}
    volumes:
      - {eng.data_root}/volumes:/vols:ro
"""
    (tmp_path / "compose.yml").write_text(text)
    code, doc = _check(eng, str(tmp_path / "compose.yml"))
    assert code == 1
    by_code = {(f["code"], f["service"]) for f in doc["data"]["findings"]}
    assert by_code == {
        ("bind-into-data-root", "peek"),
        ("no-restart-policy", "peek"),
        ("no-container-name", "peek"),
        ("no-log-rotation", "peek"),
    }
    assert [(n["code"], n["image"]) for n in doc["data"]["notes"]] == [
        ("image-not-on-engine", "tamer-test/not-here:1")
    ]
    assert "tamer-test/not-here" not in eng.docker("images", "--format", "{{.Repository}}")  # never pulled
    # with only the missing image left: not everything could be checked -> 3
    (tmp_path / "compose.yml").write_text(text.split("  peek:")[0])
    code, doc = _check(eng, str(tmp_path / "compose.yml"))
    assert code == 3 and doc["status"] == "partial" and doc["data"]["findings"] == []


def test_fix_again_after_up_keeps_the_volume_compose_made_and_skips_one_it_did_not(
    eng: Any, tmp_path: Path
) -> None:
    """After the first copy was `up` (Compose made essay_mongo_data_db, labelled for this project's key),
    a second --fix must name that volume again, not essay_mongo_data_db_2: the service would start
    on an empty volume. A same-named volume without Compose's labels is someone else's: skipped."""
    folder = tmp_path / "essay"
    folder.mkdir()
    (folder / "compose.yaml").write_text(ESSAY)
    labels = [
        "--label",
        "com.docker.compose.project=essay",
        "--label",
        "com.docker.compose.volume=mongo_data_db",
    ]
    eng.docker("volume", "create", *labels, "essay_mongo_data_db")
    eng.docker("volume", "create", "essay_mongo_data_configdb")  # made by hand: not Compose's
    code, doc = _check(eng, str(folder), "--fix")
    assert code == 1, doc
    assert {(v["path"], v["engine_name"], v["exists"]) for v in doc["data"]["fix"]["volumes"]} == {
        ("/data/db", "essay_mongo_data_db", True),
        ("/data/configdb", "essay_mongo_data_configdb_2", False),
    }
    proc = eng.tamer("compose", "check", str(folder), "--fix")
    assert "reused, its data kept" in proc.stdout
    assert (
        "--name-for /data/db=" not in proc.stdout and "--name-for /data/configdb=essay_mongo" in proc.stdout
    )


def test_fix_in_a_folder_it_may_not_write_is_a_clear_error_and_writes_nothing(
    eng: Any, tmp_path: Path
) -> None:
    """Was an internal error (PermissionError) with a traceback offer."""
    folder = tmp_path / "ro"
    folder.mkdir()
    (folder / "compose.yaml").write_text(ESSAY)
    folder.chmod(0o555)
    try:
        proc = eng.tamer("compose", "check", str(folder), "--fix", powerless=True)
    finally:
        folder.chmod(0o755)
    assert proc.returncode == 1, proc.stderr
    assert "cannot write the fixed copy" in proc.stderr and "internal error" not in proc.stderr
    assert sorted(p.name for p in folder.iterdir()) == ["compose.yaml"]
