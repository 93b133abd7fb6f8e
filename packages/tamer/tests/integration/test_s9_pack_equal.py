"""The compiled archive writer (tamer._cpack, `--writer compiled`, auto's first choice) against the pure-Python
writer, its reference: on a hostile tree the decompressed streams are equal byte for byte (so are the manifests
inside them), and so are the counts and warnings; files that shrink or grow while read, a folder swapped for a link
to the host's files mid-walk, sizes past the ustar field, a tree deeper than the open-file limit and an unreadable
file as a non-root user. No engine is needed: write_archive is called on folders directly."""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import socket
import stat
import subprocess
import sys
import tarfile
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import blake3
import pytest
import zstandard
from tamer.compiled import load, native_blake3
from tamer.errors import TamerError
from tamer.volumes import archive_pack, archive_write
from tamer.volumes.archive import _members, read_archive
from tamer.volumes.archive_write import WriteStats, write_archive
from tamer.volumes.restore import restore_into

_native = load("tamer._cpack", None)
pytestmark = pytest.mark.skipif(
    _native is None or not native_blake3(_native), reason="tamer._cpack not built with its own BLAKE3"
)
ROOT_RUN = os.geteuid() == 0
HEADER = {"volume": "v", "created": "fixed"}


def _stream(path: Path) -> bytes:
    return zstandard.ZstdDecompressor().stream_reader(io.BytesIO(path.read_bytes())).read()


def _write(root: Path, out: Path, writer: str) -> WriteStats:
    with open(out, "wb") as f:
        stats, _, _ = write_archive(str(root), f, HEADER, writer=writer)
    return stats


def _headers(stream: bytes) -> list[tarfile.TarInfo]:
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:", ignore_zeros=True) as tar:
        return tar.getmembers()


def _manifest(stream: bytes) -> dict[str, Any]:
    with tarfile.open(fileobj=io.BytesIO(stream), mode="r:", ignore_zeros=True) as tar:
        for m in tar:
            if m.name == "tamer-manifest.json":
                f = tar.extractfile(m)
                assert f is not None
                manifest: dict[str, Any] = json.loads(f.read())
                return manifest
    raise AssertionError("no manifest")


def _hostile(root: Path) -> None:
    """Every entry type, names and link targets past the ustar fields, odd names, odd sizes, xattrs, odd times
    and owners."""
    root.mkdir()
    d = root / "dir"
    d.mkdir()
    (d / "nested").mkdir()
    (d / "nested" / "leaf").write_bytes(b"leaf")
    (root / "empty-dir").mkdir()
    sizes = {"empty": 0, "one": 1, "block": 512, "block+1": 513, "b64k": 64 << 10, "b64k+1": (64 << 10) + 1}
    sizes |= {"mib": 1 << 20, "mib+1": (1 << 20) + 1, "three-mib": 3 << 20}
    for name, size in sizes.items():
        (root / name).write_bytes(os.urandom(size // 2) + b"t" * (size - size // 2))
    with open(root / "sparse", "wb") as f:  # 20 MiB, data only in the middle: streamed by both writers
        f.truncate(20 << 20)
        f.seek(9 << 20)
        f.write(b"middle of nowhere")
    os.fsync(os.open(root / "sparse", os.O_RDONLY))
    names = [
        "new\nline",
        "tab\tand space ",
        "x" * 95,  # data/ + 95 = 100 bytes: still ustar
        "y" * 96,  # 101: PAX
        "z" * 255,
        "\u00e9t\u00e9",
        "\ue000-bmp",  # UTF-8 EE 80 80: sorts after the non-UTF-8 byte 0xff by str, before it by bytes
    ]
    for name in names:
        (root / name).write_bytes(name.encode("utf-8", "surrogateescape"))
    for raw in (b"\xff\xfe-not-utf8", b"\xef-also", b"\x80"):
        with open(os.path.join(os.fsencode(root), raw), "wb") as f:
            f.write(raw)
    os.symlink("t" * 150, root / "long-target")
    os.symlink("dir/nested/leaf", root / "short-link")
    os.symlink("/etc/passwd", d / "abs-link")
    os.symlink(("../" * 40) + "etc", root / ("w" * 120))
    os.link(root / "block", root / "block-hardlink")
    os.link(root / "block", d / ("v" * 110))  # a hard link whose own name needs PAX
    os.link(root / "three-mib", d / "big-hardlink")
    os.mkfifo(root / "fifo")
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(root / "sock"))
    sock.close()
    with contextlib.suppress(OSError):  # a device node: skipped with a warning by both
        os.mknod(root / "null-dev", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    for p, x in (
        (root / "one", b"\x00\xffbin"),
        (d, b"dir-x"),
        (root, b"root-x"),
        (root / "mib+1", b"v" * 5000),
    ):
        with contextlib.suppress(OSError):
            os.setxattr(p, "user.tamer", x)
    with contextlib.suppress(OSError):
        os.setxattr(root / "one", "user.second", b"")
        os.setxattr(root / "short-link", "trusted.on-link", b"link-x", follow_symlinks=False)
        os.setxattr(root / "fifo", "trusted.on-fifo", b"fifo-x", follow_symlinks=False)
    os.utime(root / "one", ns=(0, -1_500_000_000))  # st_mtime -1.5: int() gives -1, PAX
    os.utime(root / "block", ns=(0, -500_000_000))  # -0.5: int() gives 0, plain ustar
    os.utime(
        root / "empty", ns=(0, (1 << 40) * 10**9 + 700_000_000)
    )  # clamped by the fs, past 8**11 either way
    os.utime(root / "block+1", ns=(0, 8**11 * 10**9 - 1))  # 8**11 - 1 (and a fraction): PAX
    os.utime(root / "b64k", ns=(0, (8**11 - 1) * 10**9 - 1))  # just under: ustar
    os.utime(d / "nested", (1_600_000_000, 1_600_000_000))
    os.chmod(root / "mib", 0o4755)
    os.chmod(d, 0o1777)
    if ROOT_RUN:
        os.chown(root / "one", 2_097_152, 7)  # past the 7 octal digits: PAX
        os.chown(
            root / "block", 5, 2_097_151
        )  # the first value that does not fit (uid < 0o7777777 is required)
        os.chown(root / "b64k", 2_097_150, 2_097_150)  # fits
        os.chown(root / "long-target", 4_000_000_000, 4_000_000_000, follow_symlinks=False)


def test_a_hostile_tree_is_written_byte_for_byte_as_the_python_writer_writes_it(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    _hostile(root)
    streams, stats = {}, {}
    for writer in ("python", "compiled"):
        out = tmp_path / f"{writer}.tar.zst"
        stats[writer] = _write(root, out, writer)
        streams[writer] = _stream(out)
    py, c = stats["python"], stats["compiled"]
    assert (c.files, c.entries, c.bytes) == (py.files, py.entries, py.bytes)
    assert sorted(c.warnings) == sorted(py.warnings)
    assert any("sock: skipped (a socket or device node" in w for w in c.warnings), c.warnings
    manifest = _manifest(streams["compiled"])
    assert manifest == _manifest(streams["python"])
    assert json.dumps(manifest) == json.dumps(_manifest(streams["python"]))  # the same order, too
    assert streams["compiled"] == streams["python"]
    # what the stream says, read back: the PAX cases took the PAX form, the others plain ustar
    members = {m.name: m for m in _headers(streams["compiled"])}
    assert members["data/one"].mtime == -1 and members["data/block"].mtime == 0
    assert members["data/" + "w" * 120].linkname == ("../" * 40) + "etc"
    assert members["data/dir/" + "v" * 110].linkname == "data/block"
    if ROOT_RUN:
        assert (members["data/one"].uid, members["data/long-target"].gid) == (2_097_152, 4_000_000_000)
    names = [m.name for m in _headers(streams["compiled"])]
    top = [os.fsencode(n[len("data/") :]) for n in names if n.count("/") == 1]
    assert top == sorted(top), "entries of a folder in their names' byte order"
    with contextlib.suppress(OSError):  # where user xattrs are kept: the root's, a folder's, a file's
        os.getxattr(root, "user.tamer")
        assert {"", "dir", "one"} <= set(manifest["xattrs"]), manifest["xattrs"]
    # and it restores: every checksum checked, every file back
    dest = tmp_path / "dest"
    dest.mkdir()
    done = restore_into(str(tmp_path / "compiled.tar.zst"), str(dest), privileged=True)
    assert done.read.files == c.files
    assert (dest / "sparse").read_bytes() == (root / "sparse").read_bytes()
    assert os.readlink(dest / "long-target") == "t" * 150
    assert os.stat(dest / "block-hardlink").st_ino == os.stat(dest / "block").st_ino


def _changing_tree(root: Path) -> dict[str, int]:
    """Files whose names need PAX headers (so the compiled writer calls the header function for each, between
    opening the file and reading it: the hook the tests change them from)."""
    root.mkdir()
    sizes = {
        "s" * 101: 50_000,
        "g" * 101: 50_000,
        "S" * 101: 12 << 20,
        "G" * 101: 12 << 20,
        "m" * 101: 3 << 20,
    }
    for name, size in sizes.items():
        (root / name).write_bytes(b"a" * size)
        os.utime(root / name, (1_700_000_000, 1_700_000_000))
    os.utime(root, (1_700_000_000, 1_700_000_000))  # two trees, the same stream
    return sizes


def _change(path: Path) -> None:
    name = path.name
    if name[0] in "sSm":  # shrink to a third
        os.truncate(path, path.stat().st_size // 3)
    elif name[0] in "gG":  # grow by a megabyte
        with open(path, "ab") as f:
            f.write(b"b" * (1 << 20))


def test_files_that_shrink_or_grow_while_read_are_stored_and_reported_as_the_python_writer_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    streams, stats = {}, {}
    for writer in ("python", "compiled"):
        root = tmp_path / writer
        _changing_tree(root)
        changed: list[str] = []
        if writer == "python":  # between its listing and its reading: where _read_file/_stream_file open it
            real_open = archive_write._open_listed

            def open_changed(
                path: str,
                real_open: Callable[[str], int | None] = real_open,
                changed: list[str] = changed,
                root: Path = root,
            ) -> int | None:
                name = path.rsplit("/", 1)[-1]
                if name not in changed:
                    changed.append(name)
                    _change(root / name)
                return real_open(path)

            monkeypatch.setattr(archive_write, "_open_listed", open_changed)
        else:  # the compiled writer builds a PAX header through archive._header after opening, before reading
            real_header = archive_pack._header

            def header_then_change(
                name: bytes,
                *args: Any,
                real: Any = real_header,
                changed: list[str] = changed,
                root: Path = root,
            ) -> bytes:
                rel = os.fsdecode(name).removeprefix("data/")
                if rel and rel not in changed:
                    changed.append(rel)
                    _change(root / rel)
                return bytes(real(name, *args))

            monkeypatch.setattr(archive_pack, "_header", header_then_change)
        out = tmp_path / f"{writer}.tar.zst"
        stats[writer] = _write(root, out, writer)
        monkeypatch.undo()
        assert sorted(changed) == sorted(p.name for p in root.iterdir())
        streams[writer] = _stream(out)
    py, c = stats["python"], stats["compiled"]
    assert sorted(c.warnings) == sorted(py.warnings)
    shrank = sorted(w.split(":")[0][0] for w in c.warnings)
    assert shrank == ["S", "m", "s"], c.warnings  # the grown ones are cut at their listed size, silently
    assert any(f"stored {(12 << 20) // 3} of {12 << 20} bytes padded with zeros" in w for w in c.warnings)
    assert (c.files, c.bytes) == (py.files, py.bytes) == (5, 2 * 50_000 + 2 * (12 << 20) + (3 << 20))
    assert streams["compiled"] == streams["python"]
    read_archive(str(tmp_path / "compiled.tar.zst"))  # every checksum is of what was stored


def test_a_file_cut_short_between_pieces_is_padded_and_hashed_as_stored(tmp_path: Path) -> None:
    """Mid-stream, not only before the first read: the file shrinks while its first pieces are compressed."""
    root = tmp_path / "vol"
    root.mkdir()
    big = root / "big"
    big.write_bytes(os.urandom(6 << 20))
    pieces: list[bytes] = []

    def write(piece: Any) -> None:
        pieces.append(bytes(piece))
        if len(pieces) == 2:
            os.truncate(big, 2 << 20)

    stats, files, xattrs = WriteStats(), dict[str, Any](), dict[str, dict[str, str]]()
    assert _native is not None
    archive_pack.pack_into(_native, str(root), write, stats, files, xattrs)
    stream = b"".join(pieces)
    (m,) = [m for m in _headers(stream) if m.name == "data/big"]
    assert m.size == 6 << 20 and stats.bytes == 6 << 20
    assert any(w.startswith("big: shrank while being read; stored ") for w in stats.warnings), stats.warnings
    data_at = stream.index(b"data/big") + 512
    data = stream[data_at : data_at + (6 << 20)]
    assert data[: 2 << 20] == big.read_bytes() and data[-(1 << 20) :] == bytes(1 << 20)
    assert files == {"big": [6 << 20, blake3.blake3(data).hexdigest()]}


def test_a_folder_swapped_for_a_link_to_the_host_mid_walk_brings_in_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """test_attack_s8_vol_backup_tree's attack on the compiled writer: the root is listed (b_dir a folder then),
    a long-named entry after it makes the writer call the header function, which swaps b_dir for a link to a
    folder of host files before the writer descends into it."""
    host = tmp_path / "host-etc"
    host.mkdir()
    (host / "shadow").write_text("root:SECRET-HASH")
    root = tmp_path / "vol"
    (root / "b_dir").mkdir(parents=True)
    (root / "b_dir" / "mine").write_text("volume data")
    os.symlink("b_dir/mine", root / ("c" * 120))  # listed after b_dir, written before b_dir is entered; PAX
    real_header = archive_pack._header
    swapped: list[bool] = []

    def header_then_swap(*args: Any) -> bytes:
        if not swapped:
            swapped.append(True)
            os.rename(root / "b_dir", root / "b_dir.away")
            os.symlink(host, root / "b_dir")
        return bytes(real_header(*args))

    monkeypatch.setattr(archive_pack, "_header", header_then_swap)
    out = tmp_path / "b.tar.zst"
    stats = _write(root, out, "compiled")
    monkeypatch.undo()
    assert swapped
    stream = _stream(out)
    assert b"SECRET" not in stream
    names = {m.name for m in _headers(stream)}
    assert "data/b_dir/shadow" not in names and "data/b_dir/mine" not in names
    assert any(w.startswith("b_dir: left out: removed or replaced while being read") for w in stats.warnings)


def test_a_file_past_8_gib_gets_a_pax_size(tmp_path: Path) -> None:
    """A sparse file of 8 GiB + 1: only the first piece is built and read (no disk, little time)."""
    root = tmp_path / "vol"
    root.mkdir()
    with open(root / "big", "wb") as f:
        f.truncate((8 << 30) + 1)
    assert _native is not None
    packer = _native.Packer(str(root), b"data", archive_pack._header, {}, {}, [])
    try:
        assert packer.fill()
        first = bytes(memoryview(packer))
    finally:
        packer.close()
    members = _members(io.BytesIO(first))
    assert next(members).name == "data"
    m = next(members)
    assert (m.name, m.size) == ("data/big", (8 << 30) + 1)
    assert b"size=8589934593" in first[: 4 << 10]
    with pytest.raises(RuntimeError):
        packer.fill()  # closed: spent, nothing half-written handed on


def test_a_held_piece_is_never_overwritten(tmp_path: Path) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    (root / "f").write_bytes(os.urandom(3 << 20))
    assert _native is not None
    packer = _native.Packer(str(root), b"data", archive_pack._header, {}, {}, [])
    assert packer.fill()
    view = memoryview(packer)
    with pytest.raises(BufferError):
        packer.fill()
    view.release()
    assert packer.fill()
    packer.close()


_DEEP = """
import os, resource, sys
from tamer.volumes.archive_write import write_archive
resource.setrlimit(resource.RLIMIT_NOFILE, (64, 64))
try:
    with open(sys.argv[2], "wb") as f:
        stats, _, _ = write_archive(sys.argv[1], f, {"volume": "deep"}, writer=sys.argv[3])
    print("ok", stats.entries)
except Exception as exc:
    print("error", type(exc).__name__, str(exc)[:1000])
"""


def _deep(root: Path, depth: int, fan: int) -> None:
    root.mkdir()
    fd = os.open(root, os.O_RDONLY)
    for _ in range(depth):
        for k in range(1, fan):
            os.mkdir(f"side{k}", dir_fd=fd)
        os.mkdir("d", dir_fd=fd)
        nfd = os.open("d", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    os.close(fd)


def _remove_deep(root: Path) -> None:
    """rmtree without recursion (pytest's cleanup recurses once per level: past Python's limit here)."""
    fds = [os.open(root, os.O_RDONLY | os.O_DIRECTORY)]
    with contextlib.suppress(FileNotFoundError):
        while True:
            fds.append(os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fds[-1]))
    for level in range(len(fds) - 1, -1, -1):
        for name in os.listdir(fds[level]):  # the side folders (empty); "d" below is gone already
            os.rmdir(name, dir_fd=fds[level])
        os.close(fds[level])
        if level:
            os.rmdir("d", dir_fd=fds[level - 1])
    os.rmdir(root)


def test_a_tree_3000_deep_with_few_open_files_ends_no_worse_than_the_python_writer(tmp_path: Path) -> None:
    """A chain 3,000 folders deep under a limit of 64 open files: the compiled writer holds a folder open only
    while subfolders of it wait, so it writes it; where every level has a sibling waiting (a folder per level
    must stay open) it refuses with a clear message, not a crash."""
    outcomes = {}
    for shape, fan in (("chain", 1), ("forked", 2)):
        root = tmp_path / shape
        _deep(root, 3000 if fan == 1 else 200, fan)
        try:
            for writer in ("python", "compiled"):
                r = subprocess.run(
                    [
                        sys.executable,
                        "-c",
                        _DEEP,
                        str(root),
                        str(tmp_path / f"{shape}-{writer}.tar.zst"),
                        writer,
                    ],
                    capture_output=True,
                    text=True,
                    timeout=300,
                )
                assert r.returncode == 0, r.stderr[-2000:]
                outcomes[shape, writer] = r.stdout.strip()
        finally:
            _remove_deep(root)
    assert outcomes["chain", "compiled"] == "ok 3000", outcomes
    assert outcomes["forked", "compiled"].startswith("error TamerError"), outcomes
    assert (
        "ran out of open files" in outcomes["forked", "compiled"]
        and "ulimit -n" in outcomes["forked", "compiled"]
    )
    for shape in ("chain", "forked"):  # the reference did not do better on either
        assert not outcomes[shape, "python"].startswith("ok") or outcomes[shape, "compiled"].startswith("ok")
    deep = read_archive(str(tmp_path / "chain-compiled.tar.zst"))
    assert deep.entries == 3000


@pytest.mark.skipif(not ROOT_RUN, reason="needs root to run a writer as another user")
def test_an_unreadable_file_as_a_non_root_user_fails_as_the_python_writer_does() -> None:
    home = Path(tempfile.mkdtemp(prefix="tamer-s9-nobody-"))  # pytest's tmp_path is root's alone
    os.chmod(home, 0o755)
    root = home / "vol"
    root.mkdir()
    (root / "a").write_text("readable")
    (root / "secret").write_text("not for you")
    os.chmod(root / "secret", 0o600)
    os.chmod(root, 0o755)
    code = (
        "import sys\nfrom tamer.volumes.archive_write import write_archive\n"
        "try:\n    write_archive(sys.argv[1], open('/dev/null', 'wb'), {}, writer=sys.argv[2])\n"
        "except OSError as exc:\n    print(type(exc).__name__, exc.errno, exc.filename.endswith('secret'))\n"
    )
    seen = {}
    for writer in ("python", "compiled"):
        r = subprocess.run(
            [
                "setpriv",
                "--reuid=65534",
                "--regid=65534",
                "--clear-groups",
                sys.executable,
                "-c",
                code,
                str(root),
                writer,
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        if "No module named" in r.stderr:
            shutil.rmtree(home)
            pytest.skip(f"user nobody cannot import tamer from this checkout: {r.stderr[-200:]}")
        seen[writer] = r.stdout.strip() or r.stderr[-2000:]
    shutil.rmtree(home)
    assert seen["compiled"] == seen["python"] == "PermissionError 13 True"


def test_auto_takes_the_compiled_writer_for_blake3_and_never_for_sha256(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert archive_pack.packer_module("auto", "blake3") is _native
    assert archive_pack.packer_module("auto", "sha256") is None
    monkeypatch.setenv("TAMER_PURE_PACK", "1")
    assert archive_pack.packer_module("auto", "blake3") is None
    assert archive_pack.packer_module("compiled", "blake3") is _native  # asked for by name
    monkeypatch.setenv("TAMER_PURE_PACK", "0")
    assert archive_pack.packer_module("auto", "blake3") is _native
    with pytest.raises(TamerError, match="BLAKE3 archives only"):
        archive_pack.packer_module("compiled", "sha256")
    root = tmp_path / "vol"
    root.mkdir()
    (root / "f").write_text("x")
    calls: list[str] = []
    real = archive_pack.pack_into

    def spy(*args: Any) -> None:
        calls.append("compiled")
        real(*args)

    monkeypatch.setattr(archive_write, "pack_into", spy)
    with open(tmp_path / "a", "wb") as f:
        write_archive(str(root), f, HEADER, digest="sha256")
    assert calls == []
    with open(tmp_path / "b", "wb") as f:
        write_archive(str(root), f, HEADER)
    assert calls == ["compiled"]


def test_a_random_tree_across_piece_boundaries_equals_the_python_writer(tmp_path: Path) -> None:
    """Files of every size around the writer's limits (64 KiB batch, 1 MiB whole, pieces of 1 MiB) in random
    order: pieces end inside headers' neighbourhood, inside streamed files and between them; the digests are
    computed a piece behind, on the writer's own thread, and must still land on the right files."""
    import random

    rng = random.Random(9)
    root = tmp_path / "vol"
    root.mkdir()
    limits = [0, 1, 511, 512, 513, 64 << 10, (64 << 10) + 1, (1 << 20) - 1, 1 << 20, (1 << 20) + 1, 3 << 20]
    for i in range(90):
        d = root / f"d{rng.randrange(6)}"
        d.mkdir(exist_ok=True)
        size = rng.choice(limits) + rng.choice([0, 0, rng.randrange(1, 4096)])
        (d / f"f{i}").write_bytes(rng.randbytes(size))
    streams = {}
    for writer in ("python", "compiled"):
        out = tmp_path / f"{writer}.tar.zst"
        _write(root, out, writer)
        streams[writer] = _stream(out)
    assert streams["compiled"] == streams["python"]
    read_archive(str(tmp_path / "compiled.tar.zst"))
