"""`tamer volume backup / verify / restore` against the private engine, the docker CLI as oracle."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import stat
import tarfile
from pathlib import Path
from typing import Any

import pytest
import zstandard
from tamer.errors import BackupCorrupt
from tamer.volumes.backup import backup_volume, verify_backup

BUSYBOX = "tamer-test/busybox:1"


def mountpoint(eng: Any, name: str) -> Path:
    return Path(eng.docker("volume", "inspect", "-f", "{{.Mountpoint}}", name).strip())


def fingerprint(root: Path) -> dict[str, Any]:
    """Everything a faithful copy keeps: type, mode, owner, mtime, content, link target, xattrs, hard links."""
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
            with contextlib.suppress(OSError):
                entry["xattrs"] = {
                    k: os.getxattr(p, k, follow_symlinks=False)
                    for k in os.listxattr(p, follow_symlinks=False)
                }
            out[rel] = entry
    st = root.stat()
    out["."] = {"mode": st.st_mode, "uid": st.st_uid, "gid": st.st_gid}
    return out


def populate(root: Path) -> None:
    (root / "db").mkdir()
    (root / "db" / "collection-0.wt").write_bytes(os.urandom(200_000))
    (root / "db" / "journal").mkdir(mode=0o700)
    (root / "db" / "journal" / "log.1").write_text("journal entry\n" * 100)
    (root / "config.json").write_text('{"a": 1}')
    os.chmod(root / "config.json", 0o640)
    os.chown(root / "config.json", 999, 998)
    os.chown(root / "db", 999, 999)
    os.symlink("db/journal/log.1", root / "current-log")
    os.link(root / "config.json", root / "config.hardlink")
    with open(root / "sparse.img", "wb") as f:
        f.truncate(20 * 1024 * 1024)
        f.seek(10 * 1024 * 1024)
        f.write(b"middle")
    os.mkfifo(root / "pipe")
    (root / "empty-dir").mkdir()
    with contextlib.suppress(OSError):  # a filesystem without user xattrs: the rest still counts
        os.setxattr(root / "config.json", "user.tamer-test", b"\x00\xffbinary")
    os.utime(root / "db" / "collection-0.wt", (1_500_000_000, 1_500_000_000))
    os.utime(root / "db", (1_600_000_000, 1_600_000_000))
    os.chmod(root, 0o751)


@pytest.fixture
def filled(eng: Any) -> tuple[str, Path]:
    eng.docker("volume", "create", "bk_src")
    root = mountpoint(eng, "bk_src")
    populate(root)
    return "bk_src", root


@pytest.mark.parametrize("writer", ["tar", "python", "compiled"])
def test_backup_restore_round_trip_keeps_everything(
    eng: Any, filled: tuple[str, Path], tmp_path: Path, writer: str
) -> None:
    """Every writer: GNU tar read through a tap, the compiled one (auto's first choice) and the pure-Python one."""
    name, root = filled
    out = tmp_path / "bk.tar.zst"
    if writer != "python":
        r = eng.tamer("volume", "backup", name, "-o", str(out), "--writer", writer, "--json")
        assert r.returncode == 0, r.stderr + r.stdout
        data = json.loads(r.stdout)["data"]
    else:
        res = backup_volume(eng.engine, name, out, writer="python")
        data = {"files": res.files, "sha256": res.sha256}
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    assert data["files"] == 4 and data["sha256"] == hashlib.sha256(out.read_bytes()).hexdigest()

    v = eng.tamer("volume", "verify", str(out))
    assert v.returncode == 0 and "every checksum matches" in v.stdout

    r = eng.tamer("volume", "restore", str(out), "bk_copy")
    assert r.returncode == 0, r.stderr
    assert "bk_copy" in eng.docker("volume", "ls", "-q").split()
    copy = mountpoint(eng, "bk_copy")
    assert fingerprint(copy) == fingerprint(root)
    sparse = (copy / "sparse.img").stat()
    assert sparse.st_blocks * 512 < 1024 * 1024, "the sparse file came back sparse"
    # the oracle: a container sees the same data through the engine
    assert eng.docker("run", "--rm", "-v", "bk_copy:/d", BUSYBOX, "cat", "/d/current-log").startswith(
        "journal"
    )


def test_library_interface_backup_then_verify(eng: Any, filled: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = filled
    result = backup_volume(eng.engine, name, tmp_path / "lib.tar.zst")
    checked = verify_backup(result.path)
    assert (checked.files, checked.bytes, checked.sha256, checked.volume) == (
        result.files,
        result.bytes,
        result.sha256,
        name,
    )


def test_backup_pause_users_resumes_them(eng: Any, filled: tuple[str, Path], tmp_path: Path) -> None:
    name, _ = filled
    eng.docker("run", "-d", "--name", "bk_user", "-v", f"{name}:/d", BUSYBOX, "sleep", "300")
    r = eng.tamer("volume", "backup", name, "-o", str(tmp_path / "p.tar.zst"), "--pause-users", "--json")
    assert r.returncode == 0, r.stderr
    assert len(json.loads(r.stdout)["data"]["paused"]) == 1
    assert eng.docker("inspect", "-f", "{{.State.Status}}", "bk_user").strip() == "running"


def test_backup_refuses_to_overwrite(eng: Any, filled: tuple[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "exists"
    out.write_text("keep me")
    r = eng.tamer("volume", "backup", filled[0], "-o", str(out))
    assert r.returncode == 2 and "already exists" in r.stderr
    assert out.read_text() == "keep me"


def _no_volume(eng: Any, name: str) -> None:
    assert name not in eng.docker("volume", "ls", "-q").split(), "a refused restore left a volume behind"


def test_restore_refuses_a_corrupted_backup_and_names_the_file(
    eng: Any, filled: tuple[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "c.tar.zst"
    backup_volume(eng.engine, filled[0], out)
    # change file content inside the archive, keeping it a valid zstd-compressed tar
    raw = bytearray(zstandard.ZstdDecompressor().decompressobj().decompress(out.read_bytes()))
    at = raw.find(b"journal entry")
    raw[at : at + 7] = b"JOURNAL"
    bad = tmp_path / "tampered.tar.zst"
    bad.write_bytes(zstandard.ZstdCompressor().compress(bytes(raw)))
    r = eng.tamer("volume", "restore", str(bad), "bk_bad")
    assert r.returncode == 1
    assert "data/db/journal/log.1 failed its checksum" in r.stderr
    _no_volume(eng, "bk_bad")
    with pytest.raises(BackupCorrupt, match=r"log\.1"):
        verify_backup(bad)

    # damage the compressed bytes themselves
    flipped = bytearray(out.read_bytes())
    flipped[len(flipped) // 2] ^= 0xFF
    bad.write_bytes(bytes(flipped))
    r = eng.tamer("volume", "restore", str(bad), "bk_bad")
    assert r.returncode == 1 and "data/" in r.stderr, r.stderr
    _no_volume(eng, "bk_bad")


def test_restore_refuses_a_truncated_backup(eng: Any, filled: tuple[str, Path], tmp_path: Path) -> None:
    out = tmp_path / "t.tar.zst"
    backup_volume(eng.engine, filled[0], out)
    cut = tmp_path / "cut.tar.zst"
    cut.write_bytes(out.read_bytes()[: out.stat().st_size * 2 // 3])
    r = eng.tamer("volume", "restore", str(cut), "bk_cut")
    assert r.returncode == 1 and "truncated" in r.stderr, r.stderr
    _no_volume(eng, "bk_cut")


def _crafted(path: Path, entries: list[tarfile.TarInfo]) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        header = json.dumps({"format": 1, "volume": "x"}).encode()
        info = tarfile.TarInfo("tamer-backup.json")
        info.size = len(header)
        tar.addfile(info, io.BytesIO(header))
        root = tarfile.TarInfo("data")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        files = {}
        for e in entries:
            payload = b"evil" if e.isreg() else b""
            e.size = len(payload)
            tar.addfile(e, io.BytesIO(payload) if payload else None)
            if e.isreg():
                files[e.name.removeprefix("data/")] = [4, hashlib.sha256(b"evil").hexdigest()]
        manifest = json.dumps({"format": 1, "files": files, "xattrs": {}}).encode()
        info = tarfile.TarInfo("tamer-manifest.json")
        info.size = len(manifest)
        tar.addfile(info, io.BytesIO(manifest))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


def _entry(name: str, kind: bytes = tarfile.REGTYPE, link: str = "") -> tarfile.TarInfo:
    e = tarfile.TarInfo(name)
    e.type = kind
    e.linkname = link
    e.mode = 0o777 if kind == tarfile.SYMTYPE else 0o644
    return e


@pytest.mark.parametrize(
    ("entries", "why"),
    [
        ([_entry("/tmp/tamer-evil-abs")], "absolute path"),
        ([_entry("data/../../tamer-evil-dotdot")], "`..`"),
        (
            [
                _entry("data/d", tarfile.SYMTYPE, "."),
                _entry("data/l", tarfile.SYMTYPE, "d/.."),
                _entry("data/l/tamer-evil-escape"),
            ],
            "below a link",
        ),
        ([_entry("data/h", tarfile.LNKTYPE, "/etc/passwd")], "hard link"),
    ],
    ids=["absolute", "dotdot", "symlink-chain", "hardlink-outside"],
)
def test_restore_refuses_entries_that_escape(
    eng: Any, tmp_path: Path, entries: list[tarfile.TarInfo], why: str
) -> None:
    bad = tmp_path / "evil.tar.zst"
    _crafted(bad, entries)
    r = eng.tamer("volume", "restore", str(bad), "bk_evil")
    assert r.returncode == 1, r.stdout + r.stderr
    assert "refused" in r.stderr and why in r.stderr, r.stderr
    _no_volume(eng, "bk_evil")
    assert not list(Path("/tmp").glob("tamer-evil-*"))
    assert not list(eng.data_root.glob("volumes/tamer-evil-*"))


def test_restore_into_existing_volume_only_when_empty(
    eng: Any, filled: tuple[str, Path], tmp_path: Path
) -> None:
    out = tmp_path / "e.tar.zst"
    backup_volume(eng.engine, filled[0], out)
    r = eng.tamer("volume", "restore", str(out), filled[0])
    assert r.returncode == 1 and "not empty" in r.stderr
    eng.docker("volume", "create", "bk_empty")
    r = eng.tamer("volume", "restore", str(out), "bk_empty")
    assert r.returncode == 0, r.stderr
    assert fingerprint(mountpoint(eng, "bk_empty")) == fingerprint(filled[1])
