"""Pure parts of tamer.volumes: path checks, -v specs, placement, container re-creation bodies, tar headers."""

from __future__ import annotations

import io
import tarfile
from pathlib import Path

import pytest
from tamer.errors import PlacementRefused, UsageError
from tamer.volumes.archive import _header, _members
from tamer.volumes.place import check_place, volume_place
from tamer.volumes.recreate import recreate_body
from tamer.volumes.run import parse_port, parse_volume_spec, volume_name_for


def test_check_place_accepts_new_and_empty_folders(tmp_path: Path) -> None:
    c = check_place(str(tmp_path / "a" / "b"), "/var/lib/docker")
    assert (c.exists, c.entries, c.path) == (False, 0, str(tmp_path / "a" / "b"))
    assert c.free_bytes > 0
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("x")
    assert check_place(str(tmp_path / "full"), "/var/lib/docker").entries == 1


@pytest.mark.parametrize(
    ("path", "says"),
    [
        ("", "relative"),
        ("data", "relative"),
        ("/", "`/`"),
        ("/var/lib/docker", "data-root"),
        ("/var/lib/docker/volumes/x", "data-root"),
        ("/var/lib/../lib/docker/x", "data-root"),
        ("/var/lib", "contains"),
    ],
)
def test_check_place_refuses(path: str, says: str) -> None:
    with pytest.raises(PlacementRefused, match=says):
        check_place(path, "/var/lib/docker")


def test_check_place_refuses_files_and_paths_below_files(tmp_path: Path) -> None:
    f = tmp_path / "f"
    f.write_text("x")
    with pytest.raises(PlacementRefused, match="is a file"):
        check_place(str(f), "/var/lib/docker")
    with pytest.raises(PlacementRefused, match="cannot be made"):
        check_place(str(f / "below"), "/var/lib/docker")


def test_check_place_sees_through_symlinks_into_the_data_root(tmp_path: Path) -> None:
    root = tmp_path / "docker"
    (root / "volumes").mkdir(parents=True)
    (tmp_path / "sneaky").symlink_to(root / "volumes")
    with pytest.raises(PlacementRefused, match="data-root"):
        check_place(str(tmp_path / "sneaky" / "v"), str(root))


@pytest.mark.parametrize(
    ("spec", "expect"),
    [
        ("mongo_data:/data/db", ("mongo_data", "/data/db", "", "named")),
        ("mongo_data:/data/db/:ro", ("mongo_data", "/data/db", "ro", "named")),
        ("/srv/x:/x", ("/srv/x", "/x", "", "bind")),
        ("/data/db", ("mongo-data-db", "/data/db", "", "named")),
    ],
)
def test_volume_specs(spec: str, expect: tuple[str, str, str, str]) -> None:
    vs, _ = parse_volume_spec(spec, "mongo")
    assert (vs.source, vs.target, vs.mode, vs.kind) == expect


@pytest.mark.parametrize(
    ("spec", "says"),
    [
        ("mongo_config/data/configdb", "did you mean -v mongo_config:/data/configdb"),
        ("a:b:c:d", "too many colons"),
        ("a1:rel", "not absolute"),
        ("a1:/", "`/`"),
        ("a1:/x:rx", "unknown mode"),
        ("./d:/x", "relative host path"),
        (":/x", "empty source"),
        ("b@d:/x", "not valid"),
    ],
)
def test_volume_spec_mistakes(spec: str, says: str) -> None:
    with pytest.raises(UsageError, match=says.replace("(", r"\(")):
        parse_volume_spec(spec, "mongo")


def test_ports_and_names() -> None:
    assert parse_port("27017:27017") == ("27017/tcp", [{"HostIp": "", "HostPort": "27017"}])
    assert parse_port("127.0.0.1:8080:80/udp") == ("80/udp", [{"HostIp": "127.0.0.1", "HostPort": "8080"}])
    assert parse_port("80") == ("80/tcp", [{"HostIp": "", "HostPort": ""}])
    with pytest.raises(UsageError):
        parse_port("eighty")
    assert volume_name_for("mongo_container", "/data/configdb") == "mongo_container-data-configdb"
    assert volume_name_for("x1", "/") == "x1-root"


def test_volume_place_kinds() -> None:
    bind = volume_place(
        {
            "Name": "v",
            "Driver": "local",
            "Mountpoint": "/var/lib/docker/volumes/v/_data",
            "Options": {"type": "none", "o": "bind", "device": "/hdd/v"},
        }
    )
    assert (bind.placement, bind.data_path) == ("bind", "/hdd/v")
    plugin = volume_place({"Name": "v", "Driver": "rexray", "Mountpoint": ""})
    assert plugin.placement == "plugin"
    default = volume_place({"Name": "v", "Driver": "local", "Mountpoint": "/nonexistent/volumes/v/_data"})
    assert default.placement == "default"


def test_recreate_body_names_anonymous_volumes_and_replaces_targets() -> None:
    info = {
        "Id": "abcdef1234567890",
        "Name": "/mongo",
        "Image": "sha256:1",
        "Config": {"Image": "mongo", "Env": ["A=1"], "Cmd": ["mongod"], "Hostname": "abcdef123456"},
        "HostConfig": {
            "Binds": ["mongo_data:/data/db"],
            "NetworkMode": "default",
            "RestartPolicy": {"Name": "always", "MaximumRetryCount": 0},
        },
        "Mounts": [
            {"Type": "volume", "Name": "mongo_data", "Destination": "/data/db", "RW": True},
            {"Type": "volume", "Name": "f" * 64, "Destination": "/data/configdb", "RW": False},
        ],
        "NetworkSettings": {
            "Networks": {"bridge": {"Aliases": None}, "backend": {"Aliases": ["db", "abcdef123456"]}}
        },
    }
    rec = recreate_body(info, "mongo")
    assert rec.name == "mongo"
    assert rec.body["HostConfig"]["Binds"] == ["mongo_data:/data/db", f"{'f' * 64}:/data/configdb:ro"]
    assert rec.body["Env"] == ["A=1"] and rec.body["HostConfig"]["RestartPolicy"]["Name"] == "always"
    assert rec.extra_networks == {"backend": {"Aliases": ["db"]}}
    rec = recreate_body(info, "mongo", {"/data/configdb": "mongo-data-configdb"})
    assert rec.body["HostConfig"]["Binds"] == ["mongo_data:/data/db", "mongo-data-configdb:/data/configdb:ro"]


def test_hand_written_tar_headers_read_back_by_tarfile_and_by_ours() -> None:
    long_name = b"data/" + b"d" * 150 + b"/f"
    stream = (
        _header(b"data/a", 0o640, 1000, 1001, 3, 1_700_000_000, b"0")
        + b"abc"
        + bytes(509)
        + _header(b"data/l", 0o777, 0, 0, 0, 1, b"2", b"a")
        + _header(long_name, 0o600, 2**22, 0, 0, 5, b"0")
        + bytes(1024)
    )
    with tarfile.open(fileobj=io.BytesIO(stream)) as tar:
        names = [(m.name, m.mode, m.uid, m.size, m.linkname) for m in tar]
    assert names == [
        ("data/a", 0o640, 1000, 3, ""),
        ("data/l", 0o777, 0, 0, "a"),
        (long_name.decode(), 0o600, 2**22, 0, ""),
    ]
    ours = []
    buf = io.BufferedReader(io.BytesIO(stream))  # type: ignore[arg-type]
    for m in _members(buf):
        ours.append((m.name, m.mode, m.uid, m.size, m.linkname))
        if m.isreg() and m.size:
            buf.read(m.size + (-m.size % 512))
    assert ours == names


def test_recreate_body_leaves_hostname_to_the_engine_on_shared_networks() -> None:
    info = {
        "Id": "1" * 64,
        "Name": "/h",
        "Image": "sha256:1",
        "Config": {"Image": "busybox", "Hostname": "myhost", "Env": []},
        "HostConfig": {"NetworkMode": "host"},
        "Mounts": [],
        "NetworkSettings": {"Networks": {"host": {}}},
    }
    body = recreate_body(info, "busybox").body
    assert "Hostname" not in body and body["HostConfig"]["NetworkMode"] == "host"


# -- names: two paths never share a volume (issue 10, failure 7) -------------------------------------------
def test_assign_volume_names_refuses_paths_that_share_a_slug() -> None:
    from tamer.volumes.run import assign_volume_names

    assert assign_volume_names("m", ["/data/db", "/data/configdb"]) == {
        "/data/db": "m-data-db",
        "/data/configdb": "m-data-configdb",
    }
    for paths in (["/data/db", "/data-db"], ["/a b", "/a-b"], ["/x/", "/x"], ["/a.b/c", "/a.b-c"]):
        normalized = sorted({str(Path(p)) for p in paths})
        if len(normalized) < 2:
            continue
        with pytest.raises(UsageError, match="--name-for"):
            assign_volume_names("m", normalized)
    assert (
        assign_volume_names("m", ["/data/db", "/data-db"], {"/data-db": "m-other"})["/data-db"] == "m-other"
    )
    with pytest.raises(UsageError, match="m-data-db"):  # an override onto a name another path gets
        assign_volume_names("m", ["/data/db", "/x"], {"/x": "m-data-db"})
    with pytest.raises(UsageError, match="/elsewhere and /data/db"):  # a name another mount of it uses
        assign_volume_names("m", ["/data/db"], taken={"m-data-db": "/elsewhere"})


def test_name_for_is_checked() -> None:
    from tamer.volumes.run import parse_name_for

    assert parse_name_for(["/data-db/=x_2"]) == {"/data-db": "x_2"}
    for bad in ("data-db=x", "/data-db", "/data-db=", "/d=bad name"):
        with pytest.raises(UsageError):
            parse_name_for([bad])


# -- guard: physical relations, volatile filesystems, root ---------------------------------------------------
def test_relation_is_physical(tmp_path: Path) -> None:
    import os

    from tamer.volumes.guard import relation

    (tmp_path / "a" / "b").mkdir(parents=True)
    os.symlink(tmp_path / "a", tmp_path / "alias")
    assert relation(str(tmp_path / "alias"), str(tmp_path / "a")) == "the same folder"
    assert relation(str(tmp_path / "a" / "b"), str(tmp_path / "alias")) == "inside it"
    assert relation(str(tmp_path), str(tmp_path / "a")) == "a parent of it"
    assert relation(str(tmp_path / "ab"), str(tmp_path / "a")) is None, "a prefix is not a parent"
    assert relation("", str(tmp_path)) is None


def test_volatile_filesystem_reads_the_mount_table() -> None:
    from tamer.volumes.guard import filesystem_type, volatile_filesystem

    assert volatile_filesystem("/dev/shm/x/y") in ("tmpfs", None)
    assert filesystem_type("/proc") == "proc"


def test_require_data_access_says_what_needs_root(tmp_path: Path) -> None:
    from tamer.errors import TamerError
    from tamer.volumes.guard import require_data_access

    require_data_access(str(tmp_path), "volume move")  # root here: fine
    with pytest.raises(TamerError, match=r"volume backup. needs root: it reads .*uid 1000 may not read"):
        require_data_access(
            "/var/lib/docker", "volume backup", write=False, uid=1000, access=lambda p, m: False
        )
