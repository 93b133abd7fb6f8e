"""Archives: sizes past 8 GiB, symlinks stored and restored exactly, and restores that touch nothing outside
the new volume (issue 10, failures 5, 6 and 8; duplicates, devices, hard links, free space, targets)."""

from __future__ import annotations

import hashlib
import io
import json
import os
import stat
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from tamer.errors import BackupCorrupt, NotEnoughSpace, RestoreRefused
from tamer.volumes.backup import apply_restore, backup_volume, plan_restore, verify_backup
from tamer.volumes.proof import prove_restorable
from tamer.volumes.restore import restore_into

GIB8 = 8 << 30


def mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


def fingerprint(root: Path) -> dict[str, Any]:
    """Type, mode, owner, mtime, content, link target, xattrs and hard-link groups of every entry."""
    out: dict[str, Any] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in sorted(dirnames + filenames):
            p = Path(dirpath) / name
            rel = str(p.relative_to(root))
            st = p.lstat()
            entry: dict[str, Any] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
            if not stat.S_ISLNK(st.st_mode):
                entry["mtime"] = int(st.st_mtime)
            if stat.S_ISREG(st.st_mode):
                entry["sha"] = hashlib.sha256(p.read_bytes()).hexdigest()
                if st.st_nlink > 1:
                    entry["linked_with"] = inodes.setdefault(st.st_ino, rel)
            elif stat.S_ISLNK(st.st_mode):
                entry["target"] = os.readlink(p)
            entry["xattrs"] = {
                k: os.getxattr(p, k, follow_symlinks=False) for k in os.listxattr(p, follow_symlinks=False)
            }
            out[rel] = entry
    st = root.stat()
    out["."] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
    return out


def data_segments(path: Path) -> list[tuple[int, int]]:
    """(start, end) of every data region of a file, by SEEK_DATA / SEEK_HOLE."""
    out = []
    fd = os.open(path, os.O_RDONLY)
    try:
        size = os.fstat(fd).st_size
        pos = 0
        while pos < size:
            try:
                start = os.lseek(fd, pos, os.SEEK_DATA)
            except OSError:
                break
            end = os.lseek(fd, start, os.SEEK_HOLE)
            out.append((start, end))
            pos = end
    finally:
        os.close(fd)
    return out


# -- failure 5: 8 GiB and more ---------------------------------------------------
def test_sparse_file_past_8_gib_round_trips_and_stays_sparse(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "ac_big")
    root = mountpoint(eng, "ac_big")
    big = root / "disk.img"
    marks = {0: b"head", 4 << 30: b"middle", GIB8: b"!"}  # the last byte sits at offset 8 GiB: size 8 GiB + 1
    with open(big, "wb") as f:
        for off, data in marks.items():
            f.seek(off)
            f.write(data)
    assert big.stat().st_size == GIB8 + 1 and big.stat().st_blocks * 512 < 1 << 20
    out = tmp_path / "big.tar.zst"
    r = eng.tamer("volume", "backup", "ac_big", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr + r.stdout
    assert json.loads(r.stdout)["data"]["bytes"] == GIB8 + 1, "recorded at its real size, not 0"
    assert out.stat().st_size < 16 << 20  # (restore below verifies every checksum on the way)
    r = eng.tamer("volume", "restore", str(out), "ac_big_copy")
    assert r.returncode == 0, r.stderr
    copy = mountpoint(eng, "ac_big_copy") / "disk.img"
    st = copy.stat()
    assert st.st_size == GIB8 + 1
    assert st.st_blocks * 512 < 1 << 20, f"sparseness lost: {st.st_blocks * 512} bytes allocated"
    with open(copy, "rb") as f:
        for off, data in marks.items():
            f.seek(off)
            assert f.read(len(data)) == data
    for start, end in data_segments(copy):  # nothing but the marks holds data
        assert any(start <= off < end or off <= start < off + (64 << 10) for off in marks), (start, end)


# -- failure 6: symlinks are volume content -------------------------------------
def _links_volume(root: Path) -> None:
    (root / "db").mkdir()
    (root / "db" / "x").write_text("x")
    os.symlink("/data/db/x", root / "abs")
    os.symlink("../../etc", root / "up")
    os.symlink("../../../../../../../../etc/passwd", root / "db" / "far")
    os.symlink("nowhere", root / "dangling")
    os.symlink("db", root / "dir-link")
    os.symlink("dir-link/x", root / "through")
    os.symlink(".", root / "self")


@pytest.mark.parametrize("writer", ["tar", "python", "compiled"])
def test_symlinks_absolute_and_up_round_trip_exactly_and_are_never_followed(
    eng: Any, tmp_path: Path, writer: str
) -> None:
    eng.docker("volume", "create", "ac_links")
    root = mountpoint(eng, "ac_links")
    _links_volume(root)
    sentinel = tmp_path / "sentinel"
    sentinel.mkdir()
    (sentinel / "keep").write_text("keep")
    out = tmp_path / "links.tar.zst"
    backup_volume(eng.engine, "ac_links", out, writer=writer)
    r = eng.tamer("volume", "verify", str(out))
    assert r.returncode == 0, r.stderr
    r = eng.tamer("volume", "restore", str(out), "ac_links_copy")
    assert r.returncode == 0, r.stderr
    copy = mountpoint(eng, "ac_links_copy")
    assert fingerprint(copy) == fingerprint(root)
    assert os.readlink(copy / "abs") == "/data/db/x" and os.readlink(copy / "up") == "../../etc"
    assert (sentinel / "keep").read_text() == "keep"
    prove_restorable(out, root)


# -- failure 8 and hostile archives ---------------------------------------------
def _archive(
    path: Path,
    entries: list[tuple[tarfile.TarInfo, bytes]],
    *,
    xattrs: dict[str, Any] | None = None,
    files: dict[str, Any] | None = None,
) -> None:
    """A tamer-shaped archive with exactly these entries (and a manifest that matches their contents)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        header = json.dumps({"format": 1, "volume": "x"}).encode()
        info = tarfile.TarInfo("tamer-backup.json")
        info.size = len(header)
        tar.addfile(info, io.BytesIO(header))
        manifest_files = {}
        for e, payload in entries:
            if e.isreg():
                e.size = len(payload)
                manifest_files[e.name.removeprefix("data/")] = [
                    len(payload),
                    hashlib.sha256(payload).hexdigest(),
                ]
            tar.addfile(e, io.BytesIO(payload) if e.isreg() else None)
        manifest = json.dumps(
            {"format": 1, "files": files if files is not None else manifest_files, "xattrs": xattrs or {}}
        ).encode()
        info = tarfile.TarInfo("tamer-manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def E(
    name: str, kind: bytes = tarfile.REGTYPE, link: str = "", mode: int = 0o644, payload: bytes = b"data"
) -> tuple[tarfile.TarInfo, bytes]:
    e = tarfile.TarInfo(name)
    e.type = kind
    e.linkname = link
    e.mode = mode
    e.mtime = 1_600_000_000
    return e, payload if kind == tarfile.REGTYPE else b""


ROOT = E("data", tarfile.DIRTYPE, mode=0o755)


def test_restore_never_writes_through_a_link_that_lexically_stays_inside(tmp_path: Path) -> None:
    """`d/s -> ..` then `d/s/l -> ..` used to create `l -> ..` at the volume's root (and so on upwards)."""
    arc = tmp_path / "a.tar.zst"
    _archive(
        arc,
        [
            ROOT,
            E("data/d", tarfile.DIRTYPE, mode=0o755),
            E("data/d/s", tarfile.SYMTYPE, ".."),
            E("data/d/s/l", tarfile.SYMTYPE, ".."),
        ],
    )
    target = tmp_path / "vol"
    target.mkdir()
    with pytest.raises(RestoreRefused, match="data/d/s is a symlink"):
        restore_into(str(arc), str(target))
    assert list(target.iterdir()) == [], "nothing left behind"
    assert not (tmp_path / "l").exists()


@pytest.mark.parametrize("rel", ["../outside", "/etc/passwd", "nothere", "d/../../x"])
def test_manifest_xattrs_only_for_entries_of_the_archive(tmp_path: Path, rel: str) -> None:
    victim = tmp_path / "outside"
    victim.write_text("v")
    arc = tmp_path / "a.tar.zst"
    _archive(arc, [ROOT, E("data/f")], xattrs={rel: {"user.evil": "ZXZpbA=="}})
    target = tmp_path / "vol"
    target.mkdir()
    with pytest.raises(RestoreRefused, match="not an entry restored from this archive"):
        restore_into(str(arc), str(target))
    assert os.listxattr(victim) == [] and list(target.iterdir()) == []


def test_privileged_bits_and_xattrs_only_when_asked(tmp_path: Path) -> None:
    arc = tmp_path / "a.tar.zst"
    _archive(
        arc,
        [ROOT, E("data/suid", mode=0o4755), E("data/sgid-dir", tarfile.DIRTYPE, mode=0o2775)],
        xattrs={"suid": {"security.evil": "ZXZpbA==", "user.fine": "b2s="}},
    )
    plain = tmp_path / "plain"
    plain.mkdir()
    done = restore_into(str(arc), str(plain))
    assert stat.S_IMODE((plain / "suid").stat().st_mode) == 0o755
    assert stat.S_IMODE((plain / "sgid-dir").stat().st_mode) == 0o775
    assert os.listxattr(plain / "suid") == ["user.fine"]
    assert done.dropped_privileged == 3 and any("security.evil" in w for w in done.warnings)
    priv = tmp_path / "priv"
    priv.mkdir()
    restore_into(str(arc), str(priv), privileged=True)
    assert stat.S_IMODE((priv / "suid").stat().st_mode) == 0o4755
    assert stat.S_IMODE((priv / "sgid-dir").stat().st_mode) == 0o2775
    assert sorted(os.listxattr(priv / "suid")) == ["security.evil", "user.fine"]


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([ROOT, E("data/f"), E("data/f")], "appears twice"),
        ([ROOT, E("data/f"), E("data/./f")], "appears twice"),
        ([ROOT, E("data/d", tarfile.DIRTYPE), E("data/d", tarfile.SYMTYPE, "/etc")], "appears twice"),
        ([ROOT, E("data/h", tarfile.LNKTYPE, "data/f"), E("data/f")], "hard link"),
        ([ROOT, E("data/h", tarfile.LNKTYPE, "data/d"), E("data/d", tarfile.DIRTYPE)], "hard link"),
        ([ROOT, E("data/l", tarfile.SYMTYPE, "/tmp"), E("data/l/x")], "is a symlink"),
        ([ROOT, E("data/f"), E("data/f/x")], "is a file"),
        ([ROOT, E("data/a/b")], "not in the archive before it"),
    ],
    ids=[
        "duplicate",
        "duplicate-dot",
        "dir-then-link",
        "hardlink-forward",
        "hardlink-dir",
        "below-symlink",
        "below-file",
        "no-parent",
    ],
)
def test_restore_refuses_clearly_and_leaves_nothing(
    eng: Any, tmp_path: Path, entries: list[Any], why: str
) -> None:
    arc = tmp_path / "a.tar.zst"
    _archive(arc, entries)
    r = eng.tamer("volume", "restore", str(arc), "ac_refused")
    assert r.returncode == 1 and why in r.stderr and "internal error" not in r.stderr, r.stderr
    assert "ac_refused" not in eng.docker("volume", "ls", "-q").split()


def test_devices_are_never_created(tmp_path: Path) -> None:
    arc = tmp_path / "a.tar.zst"
    dev = E("data/null", tarfile.CHRTYPE)
    dev[0].devmajor, dev[0].devminor = 1, 3
    _archive(arc, [ROOT, dev, E("data/f")])
    target = tmp_path / "vol"
    target.mkdir()
    done = restore_into(str(arc), str(target))
    assert sorted(os.listdir(target)) == ["f"] and done.skipped_devices == 1
    assert any("device node" in w for w in done.warnings)


def test_free_space_checked_before_writing(eng: Any, tmp_path: Path) -> None:
    small = tmp_path / "small"
    small.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=True)
    try:
        arc = tmp_path / "a.tar.zst"
        _archive(arc, [ROOT, E("data/fits", payload=b"x" * 1000), E("data/big", payload=os.urandom(2 << 20))])
        with pytest.raises(NotEnoughSpace, match="data/big declares 2097152 bytes"):
            restore_into(str(arc), str(small))
        assert os.listdir(small) == []
        plan = plan_restore(eng.engine, arc, "ac_nospace", at=str(small / "v"), allow_volatile=True)
        with pytest.raises(NotEnoughSpace, match="free"):
            apply_restore(eng.engine, plan)
        assert os.listdir(small) == [] and "ac_nospace" not in eng.docker("volume", "ls", "-q").split()
    finally:
        subprocess.run(["umount", str(small)], check=True)


def test_target_rechecked_at_the_point_of_action(eng: Any, tmp_path: Path) -> None:
    arc = tmp_path / "a.tar.zst"
    _archive(arc, [ROOT, E("data/f")])
    eng.docker("volume", "create", "ac_empty")
    plan = plan_restore(eng.engine, arc, "ac_empty")
    (mountpoint(eng, "ac_empty") / "arrived").write_text("someone else's data")
    with pytest.raises(RestoreRefused, match="not empty"):
        apply_restore(eng.engine, plan)
    assert os.listdir(mountpoint(eng, "ac_empty")) == ["arrived"]


def test_a_folder_another_volume_uses_is_refused(eng: Any, tmp_path: Path) -> None:
    arc = tmp_path / "a.tar.zst"
    _archive(arc, [ROOT, E("data/f")])
    shared = tmp_path / "shared"
    shared.mkdir()
    for name in ("ac_share1", "ac_share2"):
        eng.docker(
            "volume", "create", "--opt", "type=none", "--opt", "o=bind", "--opt", f"device={shared}", name
        )
    r = eng.tamer("volume", "restore", str(arc), "ac_share1")
    assert r.returncode == 1 and "volume ac_share2 uses" in r.stderr, r.stderr
    r = eng.tamer("volume", "restore", str(arc), "ac_share3", "--at", str(shared))
    assert r.returncode != 0 and "volume ac_share1 uses" in r.stderr, r.stderr
    assert os.listdir(shared) == []


def test_prove_restorable_sees_current_data_and_torn_copies(eng: Any, tmp_path: Path) -> None:
    eng.docker("volume", "create", "ac_prove")
    root = mountpoint(eng, "ac_prove")
    (root / "a").write_text("one")
    os.link(root / "a", root / "a-link")
    os.symlink("/abs/target", root / "abs")
    os.setxattr(root / "a", "user.k", b"v")
    with open(root / "sparse", "wb") as f:
        f.truncate(64 << 20)
    out = tmp_path / "p.tar.zst"
    r = backup_volume(eng.engine, "ac_prove", out)
    assert r.consistent
    proof = prove_restorable(out, root, scratch_dir=tmp_path)
    assert (proof.files, proof.bytes, proof.sha256) == (r.files, r.bytes, r.sha256)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".tamer-prove-")] == []
    (root / "a").write_text("two")  # the live data moved on: the archive no longer proves it
    with pytest.raises(BackupCorrupt, match="a: sha256 differs"):
        prove_restorable(out, root, scratch_dir=tmp_path)
    eng.docker(
        "run", "-d", "--name", "ac_prove_user", "-v", "ac_prove:/d", "tamer-test/busybox:1", "sleep", "300"
    )
    torn = backup_volume(eng.engine, "ac_prove", tmp_path / "t.tar.zst")
    assert not torn.consistent and "may be torn" in torn.warnings[0]
    assert not verify_backup(torn.path).consistent, "verify says so too, later"
    paused = backup_volume(eng.engine, "ac_prove", tmp_path / "c.tar.zst", pause_users=True)
    assert paused.consistent
