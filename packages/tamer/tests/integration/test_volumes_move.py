"""`tamer volume move` on the private engine: a verified move, consent, crashes at every step, a full disk."""

from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.errors import NotEnoughSpace
from tamer.volumes.move import Move, apply_move, move_key, plan_move

MONGO = "tamer-test/mongo-standin:1"


def fingerprint(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            e: dict[str, Any] = {"mode": st.st_mode, "owner": (st.st_uid, st.st_gid)}
            if stat.S_ISREG(st.st_mode):
                e["sha"] = hashlib.sha256(p.read_bytes()).hexdigest()
                e["mtime"] = st.st_mtime_ns
                if st.st_nlink > 1:
                    e["link"] = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                e["target"] = os.readlink(p)
            e["xattrs"] = (
                sorted(os.listxattr(p, follow_symlinks=False)) if not stat.S_ISLNK(st.st_mode) else []
            )
            out[rel] = e
    return out


def mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


def populate(root: Path) -> None:
    for i in range(40):
        d = root / f"dir{i % 4}"
        d.mkdir(exist_ok=True)
        (d / f"f{i}.bin").write_bytes(os.urandom(50_000))
    (root / "owned").write_text("owned")
    os.chown(root / "owned", 1001, 1002)
    os.chmod(root / "owned", 0o600)
    os.symlink("dir0/f0.bin", root / "link")
    os.link(root / "owned", root / "owned.hard")
    with open(root / "sparse", "wb") as f:
        f.truncate(8 << 20)
        f.write(b"head")
    os.setxattr(root / "owned", "user.tamer", b"x")


@pytest.fixture
def state(tmp_path: Path) -> dict[str, str]:
    return {"TAMER_STATE_DIR": str(tmp_path / "state")}


@pytest.fixture
def used(eng: Any) -> Iterator[tuple[str, dict[str, Any]]]:
    """Volume mv_vol with data, used by a running container whose /data/configdb is anonymous."""
    eng.docker("volume", "create", "--label", "team=data", "mv_vol")
    populate(mountpoint(eng, "mv_vol"))
    eng.docker(
        "run",
        "-d",
        "--name",
        "mv_user",
        "-e",
        "KEEP=me",
        "--restart",
        "on-failure:3",
        "-v",
        "mv_vol:/data/db",
        MONGO,
    )
    before = fingerprint(mountpoint(eng, "mv_vol"))
    yield "mv_vol", before
    for v in eng.docker("volume", "ls", "-q").split():
        if v.startswith("mv_vol.pre-move"):
            eng.docker("volume", "rm", "-f", v, check=False)


def container(eng: Any, name: str) -> dict[str, Any]:
    return json.loads(eng.docker("inspect", name))[0]


def assert_moved(eng: Any, name: str, dest: Path, before: dict[str, Any], anon: str) -> None:
    vol = json.loads(eng.docker("volume", "inspect", name))[0]
    assert vol["Options"] == {"type": "none", "o": "bind", "device": str(dest)}
    assert vol["Labels"]["team"] == "data"
    assert fingerprint(dest) == before
    c = container(eng, "mv_user")
    assert c["State"]["Running"]
    assert "KEEP=me" in c["Config"]["Env"]
    assert c["HostConfig"]["RestartPolicy"] == {"Name": "on-failure", "MaximumRetryCount": 3}
    assert {m["Destination"]: m["Name"] for m in c["Mounts"]} == {"/data/db": name, "/data/configdb": anon}
    assert eng.docker("exec", "mv_user", "cat", "/data/db/owned") == "owned"


def anon_of(eng: Any) -> str:
    return next(
        m["Name"] for m in container(eng, "mv_user")["Mounts"] if m["Destination"] == "/data/configdb"
    )


def test_preview_changes_nothing_and_consent_is_needed(
    eng: Any, used: tuple[str, Any], tmp_path: Path, state: dict[str, str]
) -> None:
    name, before = used
    dest = tmp_path / "disk2" / "mv_vol"
    r = eng.tamer("volume", "move", name, "--to", str(dest), "--stop-users", env=state)
    assert r.returncode == 0, r.stderr
    assert "preview" in r.stdout and "mv_user" in r.stdout and not dest.exists()
    r = eng.tamer("volume", "move", name, "--to", str(dest), "--apply", env=state)
    assert r.returncode == 2 and "--yes" in r.stderr
    r = eng.tamer("volume", "move", name, "--to", str(dest), "--apply", "--yes", env=state)
    assert r.returncode == 1 and "--stop-users" in r.stderr and "mv_user" in r.stderr
    assert container(eng, "mv_user")["State"]["Running"] and not dest.exists()
    assert fingerprint(mountpoint(eng, name)) == before


def test_move_keeps_everything_and_recreates_users(
    eng: Any, used: tuple[str, Any], tmp_path: Path, state: dict[str, str]
) -> None:
    name, before = used
    anon = anon_of(eng)
    old_id = container(eng, "mv_user")["Id"]
    dest = tmp_path / "disk2" / "mv_vol"
    r = eng.tamer(
        "volume", "move", name, "--to", str(dest), "--stop-users", "--apply", "--yes", "--json", env=state
    )
    assert r.returncode == 0, r.stderr + r.stdout
    data = json.loads(r.stdout)["data"]
    assert data["source_kept"] == "mv_vol.pre-move" and data["recreated"] == ["mv_user"]
    assert_moved(eng, name, dest, before, anon)
    assert container(eng, "mv_user")["Id"] != old_id
    assert fingerprint(mountpoint(eng, "mv_vol.pre-move")) == before, "the source data stays"

    # and on again, from a bind placement, purging the source after the verified move
    dest2 = tmp_path / "disk3" / "mv_vol"
    r = eng.tamer(
        "volume",
        "move",
        name,
        "--to",
        str(dest2),
        "--stop-users",
        "--purge-source",
        "--apply",
        "--yes",
        env=state,
    )
    assert r.returncode == 0, r.stderr
    assert_moved(eng, name, dest2, before, anon)
    assert not dest.exists()
    assert not list((tmp_path / "state").rglob("*.json")), "no journal left after a finished move"


# every step, killed at its worst moment (".mid": the step did its work, the journal does not say so yet),
# plus a copy killed while writing and a re-created container not yet recorded
KILL_POINTS = [
    f"move.{s}.mid"
    for s in (
        "stop",
        "copy",
        "verify",
        "remove-users",
        "keep-source",
        "remove-old",
        "create-new",
        "recreate",
        "start",
    )
]
KILL_POINTS += ["move.copy.started", "move.recreate.created", "move.verify.before", "move.commit.before"]


@pytest.mark.parametrize(
    "point",
    [
        "move.stop.after",
        "move.copy.started",
        "move.verify.after",
        "move.keep-source.mid",
        "move.remove-old.after",
        "move.recreate.created",
    ],
)
def test_killed_move_then_rerun_completes(
    eng: Any, used: tuple[str, Any], tmp_path: Path, state: dict[str, str], point: str
) -> None:
    name, before = used
    anon = anon_of(eng)
    dest = tmp_path / "disk2" / "mv_vol"
    args = ("volume", "move", name, "--to", str(dest), "--stop-users", "--apply", "--yes")
    r = eng.tamer(*args, env=state, fault=point)
    assert r.returncode == 137 and f"fault-kill: {point}" in r.stderr, r.stdout + r.stderr
    # after the crash the data is whole at one of the places it can be
    places = [mountpoint(eng, v) for v in eng.docker("volume", "ls", "-q").split() if v.startswith(name)]
    assert any(fingerprint(p) == before for p in [*places, dest] if p.exists()), "data intact somewhere"
    r = eng.tamer(*args, env=state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_moved(eng, name, dest, before, anon)


@pytest.mark.parametrize("point", KILL_POINTS)
def test_killed_move_then_rollback_restores(
    eng: Any, used: tuple[str, Any], tmp_path: Path, state: dict[str, str], point: str
) -> None:
    """Regression (issue 10): after a kill in the recreate step, `--rollback --apply` failed with "volume is
    in use" (the re-created container was not recorded yet) and left the service down."""
    name, before = used
    anon = anon_of(eng)
    dest = tmp_path / "disk2" / "mv_vol"
    r = eng.tamer(
        "volume", "move", name, "--to", str(dest), "--stop-users", "--apply", "--yes", env=state, fault=point
    )
    assert r.returncode == 137 and f"fault-kill: {point}" in r.stderr, r.stdout + r.stderr
    r = eng.tamer("volume", "move", name, "--to", str(dest), "--rollback", env=state)
    assert r.returncode == 0 and "unfinished" in r.stdout
    r = eng.tamer("volume", "move", name, "--to", str(dest), "--rollback", "--apply", "--yes", env=state)
    assert r.returncode == 0, r.stdout + r.stderr
    vol = json.loads(eng.docker("volume", "inspect", name))[0]
    assert not vol["Options"] and vol["Labels"]["team"] == "data"
    assert fingerprint(mountpoint(eng, name)) == before
    assert not dest.exists()
    assert not [v for v in eng.docker("volume", "ls", "-q").split() if v.startswith("mv_vol.pre-move")]
    c = container(eng, "mv_user")
    assert c["State"]["Running"]
    assert {m["Destination"]: m["Name"] for m in c["Mounts"]} == {"/data/db": name, "/data/configdb": anon}
    assert eng.docker("exec", "mv_user", "cat", "/data/db/owned") == "owned"
    assert len(eng.docker("ps", "-aq", "--filter", "volume=mv_vol").split()) == 1, "no re-created copy left"


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    disk = tmp_path / "small"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(disk)], check=True)
    try:
        yield disk
    finally:
        subprocess.run(["umount", "-l", str(disk)], check=False)


def test_full_destination_is_a_clean_error(
    eng: Any, used: tuple[str, Any], small_disk: Path, state: dict[str, str]
) -> None:
    name, before = used
    volumes_before = set(eng.docker("volume", "ls", "-q").split())
    r = eng.tamer(
        "volume",
        "move",
        name,
        "--to",
        str(small_disk / "mv_vol"),
        "--stop-users",
        "--apply",
        "--yes",
        "--allow-tmpfs",
        env=state,
    )
    assert r.returncode == 1, r.stdout + r.stderr
    assert "free" in r.stderr and "nothing was changed" in r.stderr
    assert set(eng.docker("volume", "ls", "-q").split()) == volumes_before
    assert fingerprint(mountpoint(eng, name)) == before
    assert container(eng, "mv_user")["State"]["Running"]


def test_destination_filling_up_mid_copy_rolls_back(
    eng: Any, used: tuple[str, Any], small_disk: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """The disk had room when planned and fills up while copying: roll back, nothing lost, nothing left."""
    name, before = used
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "lib-state"))
    volumes_before = set(eng.docker("volume", "ls", "-q").split())
    subprocess.run(["umount", "-l", str(small_disk)], check=True)
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(small_disk)], check=True)
    # plan against a disk that looks big enough: the sparse file's 8 MB are not allocated
    from tamer.volumes import copy as cp

    monkeypatch.setattr(cp, "measure", lambda root: cp.TreeSize(1, 1, 1, 1))
    plan = plan_move(eng.engine, name, str(small_disk / "mv_vol"), stop_users=True, allow_volatile=True)
    (small_disk / "filler").write_bytes(b"\1" * (2 << 20))
    with pytest.raises(NotEnoughSpace, match="rolled back"):
        apply_move(eng.engine, plan)
    assert set(eng.docker("volume", "ls", "-q").split()) == volumes_before
    assert fingerprint(mountpoint(eng, name)) == before
    assert not (small_disk / "mv_vol").exists()
    assert container(eng, "mv_user")["State"]["Running"]
    assert Move.load(move_key(eng.engine, name)) is None


@pytest.mark.parametrize(
    ("to", "says"),
    [("rel/dir", "relative"), ("/", "`/`"), ("DATAROOT/x", "data-root"), ("FILE", "is a file")],
)
def test_move_refuses_bad_destinations(
    eng: Any, used: tuple[str, Any], tmp_path: Path, state: dict[str, str], to: str, says: str
) -> None:
    afile = tmp_path / "f"
    afile.write_text("x")
    to = to.replace("DATAROOT", str(eng.data_root)).replace("FILE", str(afile))
    r = eng.tamer("volume", "move", used[0], "--to", to, "--stop-users", "--apply", "--yes", env=state)
    assert r.returncode == 2 and says in r.stderr, r.stderr


@pytest.mark.parametrize("crash", [None, "move.keep-source.after", "move.remove-old.after"])
def test_move_a_volume_placed_by_the_symlink_trick(
    eng: Any, tmp_path: Path, state: dict[str, str], crash: str | None
) -> None:
    """The essay's placement: the volume's folder in the engine's volumes dir is a symlink to another disk.
    Killed mid-swap, a rollback puts the link back and the volume works as before."""
    hdd = tmp_path / "HDD" / "docker_volumes" / "mv_link"
    hdd.mkdir(parents=True)
    link = eng.data_root / "volumes" / "mv_link"
    os.symlink(hdd, link)
    try:
        eng.docker("volume", "create", "mv_link")
        populate(hdd / "_data")
        before = fingerprint(hdd / "_data")
        dest = tmp_path / "disk2" / "mv_link"
        if crash:
            r = eng.tamer(
                "volume", "move", "mv_link", "--to", str(dest), "--apply", "--yes", env=state, fault=crash
            )
            assert r.returncode == 137
            r = eng.tamer(
                "volume", "move", "mv_link", "--to", str(dest), "--rollback", "--apply", "--yes", env=state
            )
            assert r.returncode == 0, r.stdout + r.stderr
            assert link.is_symlink() and fingerprint(hdd / "_data") == before
            out = eng.docker("run", "--rm", "-v", "mv_link:/d", "tamer-test/busybox:1", "cat", "/d/owned")
            assert out == "owned"
            return
        r = eng.tamer("volume", "move", "mv_link", "--to", str(dest), "--apply", "--yes", "--json", env=state)
        assert r.returncode == 0, r.stdout + r.stderr
        assert json.loads(r.stdout)["data"]["source_kept"] == str(hdd / "_data")
        vol = json.loads(eng.docker("volume", "inspect", "mv_link"))[0]
        assert vol["Options"]["device"] == str(dest)
        assert fingerprint(dest) == before
        assert fingerprint(hdd / "_data") == before, "the old data stays until --purge-source"
        assert not link.is_symlink()
    finally:
        eng.docker("volume", "rm", "-f", "mv_link", check=False)
        if link.is_symlink():
            link.unlink()


def test_a_move_killed_while_purging_finishes_and_is_never_rolled_back(
    eng: Any, used: tuple[str, Any], tmp_path: Path, state: dict[str, str]
) -> None:
    """Once the verified move is done and --purge-source is deleting the old data, the copy is the only whole
    one: a rollback (which removes the copy) is refused; a rerun finishes."""
    name, before = used
    anon = anon_of(eng)
    dest = tmp_path / "disk2" / "mv_vol"
    args = ("volume", "move", name, "--to", str(dest), "--stop-users", "--purge-source", "--apply", "--yes")
    r = eng.tamer(*args, env=state, fault="move.purge.before")
    assert r.returncode == 137, r.stdout + r.stderr
    r = eng.tamer("volume", "move", name, "--to", str(dest), "--rollback", "--apply", "--yes", env=state)
    assert r.returncode == 2 and "cannot be rolled back" in r.stderr and "run the same" in r.stderr, r.stderr
    assert fingerprint(dest) == before
    r = eng.tamer(*args, env=state)
    assert r.returncode == 0, r.stdout + r.stderr
    assert_moved(eng, name, dest, before, anon)
    assert not [v for v in eng.docker("volume", "ls", "-q").split() if v.startswith("mv_vol.pre-move")]
