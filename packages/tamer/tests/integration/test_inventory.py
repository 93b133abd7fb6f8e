"""tamer df / ls against a real private engine, checked against the engine's own
/system/df (what `docker system df -v` prints), the docker CLI and the files on disk."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import pytest
from tamer.collect import read_raw_snapshot
from tamer.engine import connect
from tamer.inventory import build_inventory

BUSYBOX = "tamer-test/busybox:1"
MONGO = "tamer-test/mongo-standin:1"


def df_json(eng: Any, *args: str) -> dict[str, Any]:
    proc = eng.tamer("df", "--json", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["version"] == 1 and doc["command"] == "df" and doc["status"] == "ok"
    return doc["data"]


def ls_json(eng: Any, kind: str, *args: str) -> list[dict[str, Any]]:
    # --size: these tests check measured sizes, which `tamer ls` reports only when asked
    proc = eng.tamer("ls", kind, "--json", "--size", *args)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["data"]["items"]


def totals(data: dict[str, Any]) -> dict[str, int]:
    return {t["kind"]: t["size"] for t in data["totals"]}


def within_1pct(ours: int, theirs: int) -> bool:
    return abs(ours - theirs) <= max(0.01 * theirs, 0)


def test_df_totals_agree_with_docker_system_df(eng: Any) -> None:
    # clutter: data in writable layers, in anonymous and named volumes, a second image
    eng.docker("volume", "create", "agree-named")
    eng.docker(
        "run",
        "--name",
        "agree-a",
        "-v",
        "agree-named:/v",
        BUSYBOX,
        "sh",
        "-c",
        "dd if=/dev/zero of=/v/blob bs=1k count=700 2>/dev/null; "
        "dd if=/dev/zero of=/big bs=1k count=300 2>/dev/null",
    )
    eng.docker(
        "run",
        "--name",
        "agree-b",
        MONGO,
        "sh",
        "-c",
        "dd if=/dev/zero of=/data/db/x bs=1k count=500 2>/dev/null; mkdir -p /data/configdb/d; "
        "echo hello > /data/configdb/d/f; ln /data/db/x /data/db/x-link",
    )
    eng.docker("run", "-d", "--name", "agree-running", BUSYBOX, "sleep", "600")

    ours = totals(df_json(eng))
    theirs = eng.engine.system_df()
    docker_images = theirs["LayersSize"]
    docker_containers = sum(c.get("SizeRw") or 0 for c in theirs["Containers"])
    docker_volumes = sum(max(0, (v.get("UsageData") or {}).get("Size", 0)) for v in theirs["Volumes"])
    assert docker_volumes > 1_000_000 and docker_containers > 300_000  # the clutter is really there
    assert within_1pct(ours["image"], docker_images), (ours, docker_images)
    assert within_1pct(ours["container"], docker_containers), (ours, docker_containers)
    assert within_1pct(ours["volume"], docker_volumes), (ours, docker_volumes)
    # and per object, not just in total
    vols = {v["name"]: v for v in ls_json(eng, "volumes")}
    for v in theirs["Volumes"]:
        assert vols[v["Name"]]["size"]["apparent"] == v["UsageData"]["Size"], v["Name"]
    conts = {c["id"]: c for c in ls_json(eng, "containers")}
    for c in theirs["Containers"]:
        assert conts[c["Id"]]["writable_size"] == (c.get("SizeRw") or 0), c["Names"]


def test_log_sizes_equal_the_files_on_disk(eng: Any) -> None:
    eng.docker("run", "--name", "chatty", BUSYBOX, "sh", "-c", "seq 1 40000")
    log_path = eng.docker("inspect", "-f", "{{.LogPath}}", "chatty").strip()
    on_disk = os.stat(log_path)
    [row] = [c for c in ls_json(eng, "containers") if c["name"] == "chatty"]
    assert row["log"]["path"] == log_path
    assert row["log"]["size"]["apparent"] == on_disk.st_size > 40000 * 40  # json-file wraps each line
    assert row["log"]["size"]["allocated"] == on_disk.st_blocks * 512
    data = df_json(eng)
    log_total = totals(data)["log"]
    expected = 0
    for cid in eng.docker("ps", "-aq", "--no-trunc").split():
        path = eng.docker("inspect", "-f", "{{.LogPath}}", cid).strip()
        if path and os.path.exists(path):
            expected += os.stat(path).st_size
    assert log_total == expected


def test_volumes_are_sized_where_their_data_really_lives(eng: Any, tmp_path: Path) -> None:
    elsewhere = Path(tempfile.mkdtemp(prefix="tamer-elsewhere-"))
    try:
        # 1. the essay's trick, the fragile form: the volume's _data is a symlink to another drive
        eng.docker("volume", "create", "linked")
        mountpoint = Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", "linked").strip())
        target = elsewhere / "linked-data"
        target.mkdir()
        mountpoint.rmdir()
        mountpoint.symlink_to(target)
        eng.docker(
            "run",
            "--rm",
            "-v",
            "linked:/v",
            BUSYBOX,
            "sh",
            "-c",
            "dd if=/dev/zero of=/v/a bs=1k count=800 2>/dev/null",
        )
        # 2. the robust form: local driver bind options
        bound = elsewhere / "bound-data"
        bound.mkdir()
        eng.docker(
            "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={bound}", "bound"
        )
        eng.docker(
            "run",
            "--rm",
            "-v",
            "bound:/v",
            BUSYBOX,
            "sh",
            "-c",
            "dd if=/dev/zero of=/v/b bs=1k count=600 2>/dev/null",
        )
        assert (target / "a").stat().st_size == 800 * 1024 and (bound / "b").stat().st_size == 600 * 1024

        vols = {v["name"]: v for v in ls_json(eng, "volumes")}
        assert vols["linked"]["placement"] == "symlink" and vols["linked"]["data_path"] == str(target)
        assert vols["linked"]["size"]["apparent"] == 800 * 1024
        assert vols["bound"]["placement"] == "bind" and vols["bound"]["data_path"] == str(bound)
        assert vols["bound"]["size"]["apparent"] == 600 * 1024

        # docker's own df gets both wrong: it walks the mountpoint, not where the data is
        theirs = {v["Name"]: v["UsageData"]["Size"] for v in eng.engine.system_df()["Volumes"]}
        assert theirs["linked"] == len(str(target))  # the symlink itself, not the 800 KiB behind it
        assert theirs.get("bound", 0) == 0  # left out, or the empty mountpoint: never the device
    finally:
        eng.docker("volume", "rm", "-f", "linked", "bound", check=False)
        shutil.rmtree(elsewhere, ignore_errors=True)


def test_every_volume_is_classified_with_users_and_origin(eng: Any) -> None:
    # mongo without -v: the image's VOLUMEs become two anonymous volumes (the essay's surprise)
    eng.docker("run", "--name", "mongo-anon", MONGO, "true")
    eng.docker("volume", "create", "keepme")
    eng.docker("volume", "create", "orphan-named")
    eng.docker("run", "-d", "--name", "user-running", "-v", "keepme:/k", BUSYBOX, "sleep", "600")
    eng.docker("run", "--name", "user-stopped", "-v", "keepme:/k", BUSYBOX, "true")
    anon_ids = [m["Name"] for m in json.loads(eng.docker("inspect", "mongo-anon"))[0]["Mounts"]]
    eng.docker("rm", "mongo-anon")  # without -v: its anonymous volumes are orphaned, the classic leak

    vols = {v["name"]: v for v in ls_json(eng, "volumes")}
    assert len(anon_ids) == 2
    # with its container gone nothing on the host says which image made it: no guessing
    assert all(vols[a]["origin"] is None for a in anon_ids)
    for a in anon_ids:
        assert vols[a]["kind"] == "anonymous" and vols[a]["orphaned"] is True
    keep = vols["keepme"]
    assert keep["kind"] == "named" and keep["orphaned"] is False and keep["in_use"] is True
    assert keep["users_running"] == ["user-running"] and keep["users_stopped"] == ["user-stopped"]
    assert vols["orphan-named"]["orphaned"] is True and vols["orphan-named"]["kind"] == "named"
    # every volume the engine has is classified
    assert set(vols) == set(eng.docker("volume", "ls", "-q").split())
    # filters
    orphaned = {v["name"] for v in ls_json(eng, "volumes", "--filter", "orphaned=true")}
    assert set(anon_ids) | {"orphan-named"} <= orphaned and "keepme" not in orphaned


def test_origin_is_found_while_the_container_exists(eng: Any) -> None:
    eng.docker("run", "--name", "mongo-kept", MONGO, "true")
    vols = {v["name"]: v for v in ls_json(eng, "volumes")}
    mounts = json.loads(eng.docker("inspect", "mongo-kept"))[0]["Mounts"]
    by_dest = {m["Destination"]: vols[m["Name"]] for m in mounts}
    assert by_dest["/data/db"]["origin"] == {"image": MONGO, "path": "/data/db"}
    assert by_dest["/data/configdb"]["origin"] == {"image": MONGO, "path": "/data/configdb"}
    assert by_dest["/data/db"]["users_stopped"] == ["mongo-kept"]


def test_containers_carry_their_whole_story(eng: Any) -> None:
    eng.docker(
        "run",
        "--name",
        "story",
        "--log-opt",
        "max-size=1m",
        "--log-opt",
        "max-file=2",
        "--label",
        "com.docker.compose.project=shop",
        BUSYBOX,
        "sh",
        "-c",
        "echo out; exit 3",
        check=False,
    )
    eng.docker("create", "--restart", "unless-stopped", BUSYBOX, "true")  # auto-generated name, state created
    rows = {c["name"]: c for c in ls_json(eng, "containers")}
    s = rows["story"]
    assert s["state"] == "exited" and s["exit_code"] == 3 and s["restart_policy"] == "no"
    assert s["log_driver"] == "json-file" and s["log_options"] == {"max-size": "1m", "max-file": "2"}
    assert s["owner"] == "project:shop" and s["name_generated"] is False
    assert s["started"] and s["finished"] and s["created"]
    generated = [c for c in rows.values() if c["state"] == "created"]
    assert generated and all(c["name_generated"] for c in generated)
    assert all(c["restart_policy"] == "unless-stopped" for c in generated)
    # the project shows up in the owner roll-up
    owners = {o["owner"]: o for o in df_json(eng)["owners"]}
    assert owners["project:shop"]["logs"] > 0
    assert {c["name"] for c in ls_json(eng, "containers", "--filter", "state=created")} == {
        c["name"] for c in generated
    }


def test_images_dangling_shared_and_used(eng: Any) -> None:
    from tamer.sandbox import build_busybox_image

    build_busybox_image(eng.engine, "tamer-test/dangle:1", extra_files={"/etc/v": b"one"})
    build_busybox_image(
        eng.engine, "tamer-test/dangle:1", extra_files={"/etc/v": b"two"}
    )  # first now dangling
    rows = ls_json(eng, "images")
    dangling = [i for i in rows if i["dangling"]]
    assert dangling and all(not i["tags"] for i in dangling)
    listed = {i["id"] for i in rows}
    assert listed == set(eng.docker("images", "-q", "--no-trunc").split())
    used = {i["tags"][0]: i for i in rows if i["tags"]}
    assert used[BUSYBOX]["size"] > 0
    assert {i["id"] for i in ls_json(eng, "images", "--filter", "dangling=true")} == {
        i["id"] for i in dangling
    }
    safe = df_json(eng)["safe"]
    assert {i["id"] for i in safe if i["kind"] == "image"} >= {i["id"] for i in dangling}


def test_unaccounted_is_what_the_data_root_holds_beyond_the_rest(eng: Any) -> None:
    data = df_json(eng)
    assert data["data_root_allocated"] is not None and data["unaccounted"] is not None
    # du is the oracle for the data-root's size (we do not cross into running containers' mounts)
    import subprocess

    du = int(
        subprocess.run(["du", "-sxB1", str(eng.data_root)], capture_output=True, text=True).stdout.split()[0]
    )
    assert abs(data["data_root_allocated"] - du) <= 0.02 * du, (data["data_root_allocated"], du)
    # a stray file in the data-root is unaccounted for
    stray = eng.data_root / "tmp" / "stray.bin"
    stray.write_bytes(os.urandom(3 * 1024 * 1024))
    try:
        after = df_json(eng)
        grown = after["unaccounted"] - data["unaccounted"]
        assert 3 * 1024 * 1024 <= grown <= 3 * 1024 * 1024 + 64 * 1024
    finally:
        stray.unlink()


def test_sizing_source_is_said_and_engine_fallback_works(eng: Any) -> None:
    local = eng.tamer("df")
    assert local.returncode == 0 and "walked the data-root" in local.stdout
    remote = eng.tamer("df", "--sizing", "engine")
    assert remote.returncode == 0 and "the engine's own figures" in remote.stdout
    assert "logs and unaccounted space are unknown" in remote.stdout


def test_inventory_python_api(eng: Any) -> None:
    inv = build_inventory(read_raw_snapshot(connect(eng.host)))
    assert inv.sizing == "local" and inv.data_root == str(eng.data_root)
    assert {i.display_name for i in inv.images} >= {BUSYBOX, MONGO}


@pytest.mark.parametrize("kind", ["images", "containers", "volumes", "cache"])
def test_ls_every_kind_human_and_sorted(eng: Any, kind: str) -> None:
    for sort in ("size", "age", "name"):
        proc = eng.tamer("ls", kind, "--sort", sort)
        assert proc.returncode == 0, proc.stderr


def test_fast_local_container_records_match_the_api(eng: Any) -> None:
    """The datastore path must say exactly what `docker inspect` says, for every field we use."""
    from tamer.engine.datastore import container_from_datastore

    eng.docker(
        "run",
        "--name",
        "fast-a",
        "--restart",
        "no",
        "--log-opt",
        "max-size=2m",
        "-v",
        "fastvol:/v",
        "--label",
        "team=x",
        BUSYBOX,
        "sh",
        "-c",
        "exit 4",
        check=False,
    )
    eng.docker("run", "-d", "--name", "fast-b", "--restart", "unless-stopped", MONGO)
    eng.docker("create", "--rm", "--name", "fast-c", BUSYBOX, "true")
    engine = connect(eng.host)
    driver = engine.info()["Driver"]
    listed = engine.containers()
    assert len(listed) >= 3
    for entry in listed:
        fast = container_from_datastore(str(eng.data_root), driver, entry)
        api = engine.inspect_container(entry["Id"])
        assert fast is not None, entry["Names"]
        assert fast["Name"] == api["Name"]
        assert fast["Image"] == api["Image"]
        for key in ("Status", "ExitCode"):
            assert fast["State"][key] == api["State"][key], (entry["Names"], key)
        for key in ("StartedAt", "FinishedAt"):
            assert fast["State"][key] == api["State"][key], (entry["Names"], key)
        for key in ("RestartPolicy", "AutoRemove", "LogConfig"):
            assert fast["HostConfig"][key] == api["HostConfig"][key], (entry["Names"], key)
        assert fast["LogPath"] == api["LogPath"]
        assert fast["Config"]["Labels"] == (api["Config"]["Labels"] or {})
        assert fast["Config"]["Image"] == api["Config"]["Image"]
        assert fast["GraphDriver"]["Data"].get("UpperDir") == api["GraphDriver"]["Data"].get("UpperDir")
        assert sorted((m.get("Name"), m["Destination"]) for m in fast["Mounts"]) == sorted(
            (m.get("Name"), m["Destination"]) for m in api["Mounts"]
        )


@pytest.mark.parametrize(
    ("kind", "users"),
    [("images", True), ("images", False), ("containers", False), ("volumes", True), ("volumes", False)],
)
def test_ls_without_sizes_says_the_same_as_with_them_except_sizes(eng: Any, kind: str, users: bool) -> None:
    """The lean listing (no walk, only the reads its kind needs) agrees with the full read on every field it
    shows. Without --users, images and volumes read only their own list (and, for volumes, the engine's list
    of those no container refers to): what only the container list can say is null, never empty."""
    eng.docker("volume", "create", "lean-named")
    eng.docker("volume", "create", "lean-orphan")
    eng.docker("volume", "create", "lean-running")
    eng.docker(
        "run",
        "--name",
        "lean-a",
        "-v",
        "lean-named:/v",
        "--label",
        "com.docker.compose.project=p1",
        BUSYBOX,
        "sh",
        "-c",
        "exit 2",
        check=False,
    )
    eng.docker("run", "--name", "lean-m", MONGO, "true")
    eng.docker("run", "-d", "--name", "lean-r", "-v", "lean-running:/r", BUSYBOX, "sleep", "600")
    proc = eng.tamer("ls", kind, "--json", *(["--users"] if users else []))
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)
    assert doc["data"]["sizing"] == "none"
    assert doc["data"]["users_read"] is (users or kind == "containers")
    lean = {i.get("id") or i["name"]: i for i in doc["data"]["items"]}
    full = {i.get("id") or i["name"]: i for i in ls_json(eng, kind)}
    assert set(lean) == set(full)
    unread: tuple[str, ...] = ()
    if kind == "containers":
        assert lean and all(i["writable_size"] is None and i["total_size"] is None for i in lean.values())
        keys: tuple[str, ...] = (
            "name",
            "state",
            "exit_code",
            "restart_policy",
            "owner",
            "image",
            "image_id",
            "mounts",
            "labels",
        )
    elif kind == "volumes":
        assert lean and all(i["size"] is None for i in lean.values())
        keys = ("kind", "orphaned", "placement", "labels")
        users_keys = ("in_use", "users_running", "users_stopped", "origin", "owner")
        if users:
            keys += users_keys
        else:
            unread = users_keys
            # the engine's reference count says the same as the users tamer reads: orphaned, used by a
            # stopped container only, used by a running one
            assert lean["lean-orphan"]["orphaned"] is True and full["lean-orphan"]["orphaned"] is True
            assert lean["lean-named"]["orphaned"] is False and full["lean-named"]["users_stopped"] == [
                "lean-a"
            ]
            assert lean["lean-running"]["orphaned"] is False and full["lean-running"]["in_use"] is True
    else:
        assert lean and all(i["shared_size"] is None and i["unique_size"] is None for i in lean.values())
        keys = ("tags", "size", "dangling")
        for key, item in lean.items():  # the image list gives whole seconds, the inspect nanoseconds
            assert item["created"][:19] == full[key]["created"][:19], (item["created"], full[key])
        users_keys = ("containers", "owner", "volume_paths", "layers")
        if users:
            keys += users_keys
        else:
            unread = users_keys

    def same(a: Any, b: Any) -> bool:  # the engine lists a container's mounts in no fixed order
        return (
            bool(sorted(map(json.dumps, a)) == sorted(map(json.dumps, b))) if isinstance(a, list) else a == b
        )

    for key, item in lean.items():
        for field in keys:
            assert same(item[field], full[key][field]), (key, field, item[field], full[key][field])
        for field in unread:
            # a volume a compose project labels is owned by that project whatever its users
            if field == "owner" and kind == "volumes" and item["labels"].get("com.docker.compose.project"):
                assert item[field] == full[key][field]
            else:
                assert item[field] is None, (key, field, item[field])
    listed = {
        "containers": ("ps", "-aq", "--no-trunc"),
        "volumes": ("volume", "ls", "-q"),
        "images": ("images", "-q", "--no-trunc"),
    }[kind]
    assert set(lean) == set(eng.docker(*listed).split())
    # the table leaves out the columns it did not read, and --users brings them back
    if kind != "containers":
        text = eng.tamer("ls", kind, *(["--users"] if users else [])).stdout
        header = text.splitlines()[0].split()
        unread_column = "CONTAINERS" if kind == "images" else "USERS"
        assert (unread_column in header) is users, header
        if kind == "images":
            assert ("OWNER" in header) is users, header


def test_ls_unused_images_reads_the_users_it_needs(eng: Any) -> None:
    """`--filter unused` is about users: it reads the container list even without --users."""
    eng.docker("create", "--name", "unused-probe", BUSYBOX, "true")
    proc = eng.tamer("ls", "images", "--json", "--filter", "unused=false")
    assert proc.returncode == 0, proc.stderr
    doc = json.loads(proc.stdout)["data"]
    assert doc["users_read"] is True
    assert any(i["containers"] for i in doc["items"])


QUICK_FILTER_CASES = {
    "images": [[], ["dangling=true"], ["dangling=false"], ["older-than=1s"], ["label=lean.probe"]],
    "volumes": [
        [],
        ["orphaned=true"],
        ["orphaned=false"],
        ["anonymous=true"],
        ["named=true", "orphaned=true"],
        ["placement=bind"],
        ["placement=default"],
        ["label=lean.probe=1"],
        ["older-than=1s"],
    ],
}


@pytest.mark.parametrize("kind", ["images", "volumes"])
def test_quick_table_says_what_the_inventory_says(eng: Any, kind: str) -> None:
    """The lean table (tamer.quick_ls, straight from the engine's lists) lists the same objects in the same
    order with the same cells as the inventory read with every user, for every filter it answers: its
    `orphaned` (the engine's reference count) agrees with the users tamer reads, its anonymous/named and
    placement with the inventory's rules."""
    import time

    from tamer.collect import read_for_listing
    from tamer.inventory import build_inventory
    from tamer.listing import parse_filters, select
    from tamer.quick_ls import image_rows, volume_rows
    from tamer.report.units import human_age, human_bytes

    eng.docker("volume", "create", "--label", "lean.probe=1", "q-orphan")
    eng.docker("volume", "create", "q-stopped")
    eng.docker("volume", "create", "q-running")
    eng.docker(
        "volume", "create", "-d", "local", "-o", "type=none", "-o", "o=bind", "-o", "device=/tmp", "q-bind"
    )
    eng.docker("run", "--name", "q-s", "-v", "q-stopped:/s", "-v", "q-bind:/b", BUSYBOX, "true")
    eng.docker("run", "-d", "--name", "q-r", "-v", "q-running:/r", BUSYBOX, "sleep", "600")
    eng.docker("run", "--name", "q-m", MONGO, "true")  # two anonymous volumes, a stopped user
    eng.docker("rm", eng.docker("create", MONGO, "true").strip())  # and two orphaned anonymous ones
    time.sleep(1.1)  # so that older-than=1s has something on each side
    eng.docker("volume", "create", "q-new")
    engine = eng.engine
    inv = build_inventory(read_for_listing(engine, kind, users=True))
    listed = engine.images() if kind == "images" else engine.volumes()
    dangling = {v["Name"] for v in engine.volumes(dangling=True)}
    now = inv.taken_at
    for filters in QUICK_FILTER_CASES[kind]:
        for sort in ("name", "age"):
            parsed = parse_filters(kind, filters)
            objs = select(inv, kind, filters, sort, now=now)
            if kind == "images":
                want = [
                    [
                        i.display_name if len(i.display_name) <= 40 else i.display_name[:37] + "...",
                        i.short_id,
                        human_bytes(i.size),
                        "?",
                        human_age(i.created, now),
                        "dangling" if i.dangling else "",
                    ]
                    for i in objs
                ]
                got = image_rows(listed, parsed, sort, now)
                # the list gives whole seconds: an age can differ only in an image's first seconds
                assert [r[:4] + r[5:] for r in got] == [r[:4] + r[5:] for r in want], (filters, sort)
            else:
                want = [
                    [
                        v.name if len(v.name) <= 40 else v.name[:37] + "...",
                        v.kind,
                        "orphaned" if v.orphaned else "used",
                        "?",
                        v.placement + (f" -> {v.data_path}" if v.placement != "default" else ""),
                    ]
                    for v in objs
                ]
                got = volume_rows(listed, dangling, engine.api_version, parsed, sort, now)
                assert got == want, (filters, sort)
            assert got or filters, "every case must list something to compare"
    if kind == "volumes":  # the cases above met every status
        rows = {r[0]: r for r in volume_rows(listed, dangling, engine.api_version, [], "name", now)}
        assert rows["q-orphan"][2] == "orphaned" and rows["q-new"][2] == "orphaned"
        assert rows["q-stopped"][2] == "used" and rows["q-running"][2] == "used"
        assert rows["q-bind"][4] == "bind -> /tmp"


def test_quick_container_table_is_the_inventorys(eng: Any) -> None:
    """The lean `tamer ls containers` table (quick_ls, from the engine's records) prints exactly the inventory's
    unsized table, for every filter and sort it answers: states with exit codes, restart policies and --rm,
    compose owners, generated names, labels, ages from creation and, for stopped ones, from when they stopped."""
    import time
    from datetime import UTC, datetime

    from tamer.inventory import RawSnapshot, build_inventory
    from tamer.listing import parse_filters, select
    from tamer.quick_ls import _container_records, container_rows, render
    from tamer.report.views import render_ls

    eng.docker(
        "run", "--name", "qc-exit3", "--label", "qc.probe=1", BUSYBOX, "sh", "-c", "exit 3", check=False
    )
    eng.docker("run", "-d", "--name", "qc-run", "--restart", "unless-stopped", BUSYBOX, "sleep", "600")
    eng.docker("run", "-d", "--rm", "--name", "qc-rm", BUSYBOX, "sleep", "600")
    eng.docker("create", "--label", "com.docker.compose.project=shop", BUSYBOX, "true")  # generated name
    time.sleep(1.2)  # so that older-than=1s has something on each side
    eng.docker("create", "--name", "qc-new", BUSYBOX, "true")
    engine = eng.engine
    records = _container_records(engine)
    now = datetime.now(UTC)
    raw = RawSnapshot(
        taken_at=now.timestamp(),
        host=engine.where,
        api_version=engine.api_version,
        info={},
        containers=records,
        images=[],
        volumes=[],
    )
    inv = build_inventory(raw)
    cases = [
        [],
        ["state=exited"],
        ["state=running,created"],
        ["generated-name=true"],
        ["generated-name=false"],
        ["label=qc.probe=1"],
        ["older-than=1s"],
        ["state=created", "older-than=1s"],
    ]
    seen = set()
    for filters in cases:
        for sort in ("name", "age"):
            want = render_ls(
                "containers", select(inv, "containers", filters, sort, now=now), now, sized=False
            )
            got = render(
                "containers", container_rows(records, parse_filters("containers", filters), sort, now)
            )
            assert got == want, (filters, sort)
            seen.update(line.split()[0] for line in got.splitlines()[1:])
    assert {"qc-exit3", "qc-run", "qc-rm", "qc-new"} <= seen
    table = eng.tamer("ls", "containers").stdout
    row = next(line for line in table.splitlines() if line.startswith("qc-exit3 "))
    assert "exited (3)" in row
    assert "--rm" in next(line for line in table.splitlines() if line.startswith("qc-rm "))
    assert "project:shop" in table
