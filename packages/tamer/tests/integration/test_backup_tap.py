"""The backup's tar tap in C (tamer._ctap) against the Python one it stands in for (issue 11).

_TarTap (Python) is the reference: on the same tar stream both must record the same manifest (every
file's size and digest, every entry's xattrs, in the same order), the same counts and warnings, and
fail on the same broken input. Checked three ways: whole backups of a hostile tree written both ways
(byte-identical archives, a manifest equal to digests and xattrs computed here from the files
themselves, restores equal to the source), the same GNU tar stream fed in chunks of every awkward size,
and streams built by hand in forms GNU tar writes only sometimes (GNU long names, global headers,
device nodes, base-256 numbers, big PAX payloads) or never (garbage).

TAMER_ATTACK_EXAMPLES (as test_restore_attack.py) sizes the random chunking campaign.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import sys
import tarfile
from pathlib import Path
from typing import Any

import blake3
import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tamer.volumes import archive_tar
from tamer.volumes.archive import MANIFEST_NAME, read_archive
from tamer.volumes.archive_tar import _forward_tar, _TarTap, gnu_tar, new_tap
from tamer.volumes.archive_write import WriteStats, write_archive
from tamer.volumes.restore import restore_into

EXAMPLES = max(10, int(os.environ.get("TAMER_ATTACK_EXAMPLES", "200")) // 4)
GIB8 = 8 << 30
ROOT = os.geteuid() == 0


@pytest.fixture(autouse=True)
def _compiled_built() -> None:
    try:
        import tamer._ctap  # noqa: F401
    except ImportError:
        message = "tamer._ctap was not built (setup.py needs a C compiler and Python's headers)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI's machine has both: a missing build is a regression there
        pytest.skip(message)
    if gnu_tar() is None:
        pytest.fail("GNU tar is not installed; the tap taps its stream")


# -- a hostile tree ----------------------------------------------------------------------------------
def hostile_tree(root: Path) -> None:
    """Every kind of entry a volume holds, named and sized to hit the format's edges."""
    r = os.fsencode(root)

    def p(*parts: bytes) -> bytes:
        return os.path.join(r, *parts)

    def write(path: bytes, data: bytes) -> None:
        with open(path, "wb") as f:
            f.write(data)

    os.makedirs(p(b"sub", b"inner"))
    write(p(b"empty"), b"")
    # chunk (1 KiB) and tree edges of BLAKE3, and the C tap's batch limit (64 KiB: batched up to it, streamed past)
    for n in (1, 511, 512, 513, 1024, 1025, 2048, 4096, 10_000, 65_535, 65_536, 65_537, (1 << 20) + 1):
        write(p(b"size-%d" % n), os.urandom(n // 2) + bytes(n - n // 2))
    write(p(b"new\nline"), b"a newline in the name")
    write(p(b"bad-\xff\xfe-utf8"), b"not UTF-8")
    write(p(b"tab\tand space =x"), b"=")
    write(p(b"n" * 255), b"a 255-byte name")
    os.mkdir(p(b"d" * 255))
    write(p(b"d" * 255, b"f" * 255), b"a path past 510 bytes")
    deep = p(*([b"deep"] * 30))
    os.makedirs(deep)
    write(os.path.join(deep, b"leaf"), b"a path past 100 bytes")
    write(p(b"data"), b"named like the archive's data folder")
    write(p(b"datafile"), b"starts like it")
    write(p(b"sub", b"inner", b"x"), b"x" * 700)
    os.link(p(b"size-512"), p(b"hard"))
    os.link(p(b"size-512"), p(b"d" * 255, b"hard-" + b"h" * 200))  # a link name and target past 100
    os.symlink(b"size-1", p(b"sym-rel"))
    os.symlink(b"/etc/passwd", p(b"sym-abs"))
    os.symlink(b"../../nowhere", p(b"sym-dangling"))
    os.symlink(b"t" * 200, p(b"sym-long"))
    os.mkfifo(p(b"fifo"))
    xattrs = {
        b"size-1": {"user.plain": b"v", "user.bin": b"\xff\x00\xfe\n=", "user.big": os.urandom(3000)},
        b"sub": {"user.dir": b"on a folder", os.fsdecode(b"user.not-utf8-\xff"): b"name"},
        b"new\nline": {"user.k=v": b"x=y", "user.p%3D%": b"%"},  # GNU tar escapes '=' and '%' in names
        b"": {"user.root": b"on the root"},
    }
    if ROOT:
        xattrs[b"empty"] = {"security.tamer": b"privileged", "trusted.tamer": b"\x00"}
    for name, attrs in xattrs.items():
        for k, v in attrs.items():
            os.setxattr(p(name) if name else r, k, v, follow_symlinks=False)


def expected_manifest(root: Path, digest: str) -> tuple[dict[str, list[Any]], dict[str, dict[str, str]]]:
    """Digests and xattrs computed from the files themselves (hard links: the first name GNU tar meets
    holds the data, so which of the names is in `files` is checked against the archive's order)."""
    new = blake3.blake3 if digest == "blake3" else hashlib.sha256
    files: dict[str, list[Any]] = {}
    xattrs: dict[str, dict[str, str]] = {}
    r = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(r):
        for name in dirnames + filenames + ([b""] if dirpath == r else []):
            path = os.path.join(dirpath, name) if name else r
            rel = os.fsdecode(os.path.relpath(path, r)) if name else ""
            st_ = os.lstat(path)
            x = {
                k: base64.b64encode(os.getxattr(path, k, follow_symlinks=False)).decode()
                for k in os.listxattr(path, follow_symlinks=False)
            }
            if x:
                xattrs[rel] = x
            if stat.S_ISREG(st_.st_mode):
                h = new()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        h.update(chunk)
                files[rel] = [st_.st_size, h.hexdigest()]
    return files, xattrs


def manifest_bytes(arc: Path) -> bytes:
    """The manifest member exactly as stored."""
    with (
        open(arc, "rb") as f,
        zstandard.ZstdDecompressor().stream_reader(f) as z,
        tarfile.open(fileobj=z, mode="r|", ignore_zeros=True) as t,
    ):
        for m in t:
            if m.name == MANIFEST_NAME:
                got = t.extractfile(m)
                assert got is not None
                return got.read()
    raise AssertionError(f"{arc} has no manifest")


def tree(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    inodes: dict[int, str] = {}
    r = os.fsencode(root)
    for dirpath, dirnames, filenames in os.walk(r):
        for name in sorted(dirnames + filenames):
            path = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(path, r))
            s = os.lstat(path)
            e: dict[str, Any] = {"mode": s.st_mode, "uid": s.st_uid, "gid": s.st_gid}
            if not stat.S_ISLNK(s.st_mode):
                e["mtime"] = int(s.st_mtime)
                e["xattrs"] = {k: os.getxattr(path, k) for k in os.listxattr(path)}
            if stat.S_ISREG(s.st_mode):
                h = blake3.blake3()
                with open(path, "rb") as f:
                    while chunk := f.read(1 << 24):
                        h.update(chunk)
                e["b3"] = h.hexdigest()
                if s.st_nlink > 1:
                    e["linked_with"] = inodes.setdefault(s.st_ino, rel)
            elif stat.S_ISLNK(s.st_mode):
                e["target"] = os.readlink(path)
            out[rel] = e
    return out


def backup(root: Path, arc: Path, monkeypatch: pytest.MonkeyPatch, *, pure: bool, digest: str) -> Any:
    monkeypatch.setenv("TAMER_PURE_TAP", "1" if pure else "0")
    with open(arc, "wb") as f:
        stats, sha, size = write_archive(str(root), f, {"volume": "tap"}, writer="tar", digest=digest)
    return stats, sha, size


def test_new_tap_is_c_unless_told_and_python_without_the_build(monkeypatch: pytest.MonkeyPatch) -> None:
    from tamer._ctap import Tap as CTap

    monkeypatch.delenv("TAMER_PURE_TAP", raising=False)
    assert type(new_tap(WriteStats(), {}, {})) is CTap
    monkeypatch.setenv("TAMER_PURE_TAP", "1")
    assert type(new_tap(WriteStats(), {}, {})) is _TarTap
    assert type(new_tap(WriteStats(), {}, {}, pure=False)) is CTap
    monkeypatch.delenv("TAMER_PURE_TAP")
    from tamer._ctap import readinto_full

    assert archive_tar._fill() is readinto_full
    monkeypatch.setitem(sys.modules, "tamer._ctap", None)  # as where it was never built
    assert type(new_tap(WriteStats(), {}, {})) is _TarTap
    fill = archive_tar._fill()
    assert fill is not readinto_full
    r, w = os.pipe()
    os.write(w, b"abc")
    os.close(w)
    buf = bytearray(10)
    assert (fill(r, buf), fill(r, buf), bytes(buf[:3])) == (3, 0, b"abc")
    os.close(r)


@pytest.mark.parametrize("digest", ["blake3", "sha256"])
def test_c_and_python_taps_write_the_same_archive_of_a_hostile_tree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, digest: str
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    hostile_tree(src)
    c_arc, py_arc = tmp_path / "c.tar.zst", tmp_path / "py.tar.zst"
    c_stats, c_sha, c_size = backup(src, c_arc, monkeypatch, pure=False, digest=digest)
    py_stats, py_sha, py_size = backup(src, py_arc, monkeypatch, pure=True, digest=digest)

    with monkeypatch.context() as m:  # where tamer._ctap was never built: the Python tap and os.read
        m.setitem(sys.modules, "tamer._ctap", None)
        none_stats, none_sha, none_size = backup(src, tmp_path / "none.tar.zst", m, pure=False, digest=digest)

    assert manifest_bytes(c_arc) == manifest_bytes(py_arc)
    assert (c_sha, c_size) == (py_sha, py_size) == (none_sha, none_size)  # the whole archive, byte for byte
    assert vars(none_stats) == vars(py_stats)
    assert c_sha == hashlib.sha256(c_arc.read_bytes()).hexdigest()
    assert vars(c_stats) == vars(py_stats)

    # ... and both right, against digests and xattrs computed here from the files
    manifest = json.loads(manifest_bytes(c_arc))
    files, xattrs = expected_manifest(src, digest)
    written = manifest["files"]
    hard = {"hard", os.fsdecode(b"d" * 255 + b"/hard-" + b"h" * 200), "size-512"}
    stored_once = hard & set(written)  # tar stores a hard-linked file's data under the first name it meets
    assert len(stored_once) == 1
    assert {k: v for k, v in written.items() if k not in hard} == {
        k: v for k, v in files.items() if k not in hard
    }
    assert written[stored_once.pop()] == files["size-512"]
    assert manifest["xattrs"] == xattrs
    assert c_stats.files == len(written) and c_stats.bytes == sum(v[0] for v in written.values())
    assert {"new\nline", os.fsdecode(b"bad-\xff\xfe-utf8"), "n" * 255, "data"} <= set(written)

    for name, arc in (("c", c_arc), ("py", py_arc)):
        assert read_archive(str(arc)).sha256 == c_sha
        out = tmp_path / f"restored-{name}"
        out.mkdir()
        restore_into(str(arc), str(out), privileged=True)
        assert tree(out) == tree(src), name


def test_a_size_past_8_gib_comes_from_its_pax_record_in_both_taps() -> None:
    """The ustar size field stops short of 8 GiB: the size is a PAX record (as GNU tar writes it for
    the sparse 8 GiB file of test_archive_cases, which backs it up whole). Fed here without tar or
    disk: a header, then 8 GiB of zeros in 64 MiB pieces, then the next member."""
    size = GIB8 + 777
    info = tarfile.TarInfo("data/huge")
    info.size = size
    header = info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")  # a PAX size record, then ustar
    assert b" size=8589935369\n" in header
    tail = io.BytesIO()
    with tarfile.open(fileobj=tail, mode="w", format=tarfile.PAX_FORMAT) as t:
        member(t, "data/after", b"after")
    zeros = memoryview(bytes(64 << 20))
    expected = blake3.blake3(max_threads=blake3.blake3.AUTO)
    results = []
    for pure in (False, True):
        stats, files, xattrs = WriteStats(), {}, {}  # type: ignore[var-annotated]
        tap = new_tap(stats, files, xattrs, "blake3", pure=pure)
        tap.feed(header)
        left = size
        while left:
            piece = zeros[: min(len(zeros), left)]
            tap.feed(piece)
            if not pure:
                expected.update(piece)
            left -= len(piece)
        tap.feed(bytes(-size % 512) + tail.getvalue())
        assert tap.ended
        results.append((files, vars(stats)))
    assert results[0] == results[1]
    assert results[0][0] == {
        "huge": [size, expected.hexdigest()],
        "after": [5, blake3.blake3(b"after").hexdigest()],
    }


# -- the same stream, chunked every way --------------------------------------------------------------
@pytest.fixture(scope="module")
def tar_stream(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    """What GNU tar writes for the hostile tree, as tamer runs it."""
    src = tmp_path_factory.mktemp("stream") / "src"
    src.mkdir()
    hostile_tree(src)
    tar = gnu_tar("tar")
    assert tar is not None
    parts: list[bytes] = []
    _forward_tar(
        tar, str(src), lambda c: parts.append(bytes(c)), WriteStats(), {}, {}, "blake3", pure_tap=True
    )
    return b"".join(parts)


def tap_result(stream: bytes, cuts: list[int], *, pure: bool, digest: str = "blake3") -> dict[str, Any]:
    """What a tap records from `stream` fed in pieces ending at `cuts`, or how it failed."""
    stats, files, xattrs = WriteStats(), {}, {}  # type: ignore[var-annotated]
    tap = new_tap(stats, files, xattrs, digest, pure=pure)
    start = 0
    try:
        for end in [*sorted(cuts), len(stream)]:
            tap.feed(stream[start:end])
            start = end
    except Exception as exc:  # compared between the two taps: the same type, at the same point
        return {"error": type(exc).__name__, "files": list(files.items()), "stats": vars(stats)}
    return {
        "files": list(files.items()),  # order matters: the manifest is written in it
        "xattrs": list(xattrs.items()),
        "stats": vars(stats),
        "ended": tap.ended,
    }


@pytest.mark.parametrize("size", [1, 7, 511, 512, 513, 1000, 4096, 65536, 1 << 20])
def test_c_tap_equals_python_tap_at_every_chunk_size(tar_stream: bytes, size: int) -> None:
    reference = tap_result(tar_stream, [], pure=True)
    assert reference["ended"] and len(reference["files"]) > 15
    cuts = list(range(size, len(tar_stream), size))
    assert tap_result(tar_stream, cuts, pure=False) == reference
    if size >= 511:  # the Python tap one byte at a time would take a minute
        assert tap_result(tar_stream, cuts, pure=True) == reference


@settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.data())
def test_c_tap_equals_python_tap_at_random_cuts(tar_stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(0, len(tar_stream)), max_size=60))
    assert tap_result(tar_stream, cuts, pure=False) == tap_result(tar_stream, cuts, pure=True)


# -- streams built by hand -----------------------------------------------------------------------------
def member(
    t: tarfile.TarFile,
    name: str,
    data: bytes = b"",
    *,
    kind: bytes = tarfile.REGTYPE,
    pax: dict[str, str] | None = None,
) -> None:
    info = tarfile.TarInfo(name)
    info.type, info.size, info.mtime, info.mode = kind, len(data), 1_600_000_000, 0o644
    if kind == tarfile.SYMTYPE or kind == tarfile.LNKTYPE:
        info.linkname, info.size = "data/" + "L" * 150, 0
    if kind in (tarfile.CHRTYPE, tarfile.BLKTYPE):
        info.devmajor, info.devminor, info.size = 1, 3, 0
    info.pax_headers = pax or {}
    t.addfile(info, io.BytesIO(data) if data else None)


def gnu_stream() -> bytes:
    """GNU format: long names and link targets in ././@LongLink members (L and K), base-256 ids."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as t:
        member(t, "data", kind=tarfile.DIRTYPE)
        member(t, "data/" + "long/" * 40 + "file", b"in a long name" * 100)
        member(t, "data/" + "x" * 300, kind=tarfile.LNKTYPE)
        member(t, "data/" + "y" * 120, kind=tarfile.SYMTYPE)
        info = tarfile.TarInfo("data/big-ids")
        info.uid = info.gid = 1 << 40  # past 8 octal digits: base-256
        info.size = 5
        t.addfile(info, io.BytesIO(b"12345"))
        member(t, "data/chr", kind=tarfile.CHRTYPE)
        member(t, "data/blk", kind=tarfile.BLKTYPE)
        member(t, "data/contig", b"contiguous", kind=tarfile.CONTTYPE)
        member(t, "data/empty")
    return buf.getvalue()


def pax_stream() -> bytes:
    """PAX: global headers, big and binary xattr records, a path record, an empty name record."""
    buf = io.BytesIO()
    glob = {"comment": "a global header (typeflag g) with a payload"}
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT, pax_headers=glob) as t:
        member(t, "data", kind=tarfile.DIRTYPE)
        odd = tarfile.TarInfo("data/g-member")  # a g member of size 0 after an x header: both ignored
        odd.type = tarfile.XGLTYPE
        odd.pax_headers = {"comment": "its own x header"}
        t.addfile(odd)
        member(
            t,
            "data/x",
            b"with xattrs",
            pax={
                "SCHILY.xattr.user.big": "v" * 5000,  # a PAX payload over many blocks
                "SCHILY.xattr.user.bin": b"\xff\x00=\n".decode("utf-8", "surrogateescape"),
                "comment": "not an xattr",
            },
        )
        member(t, "data/short", b"z" * 600, pax={"path": "data/renamed/by/" + "p" * 200})
        member(t, "data/sized", b"s" * 513, pax={"size": "513"})
        member(t, "data/unicode-\u00e9\u4e2d", b"u")
    return buf.getvalue()


@pytest.mark.parametrize("make", [gnu_stream, pax_stream])
@pytest.mark.parametrize("digest", ["blake3", "sha256"])
def test_c_tap_equals_python_tap_on_forms_gnu_tar_writes_only_sometimes(make: Any, digest: str) -> None:
    stream = make()
    reference = tap_result(stream, [], pure=True, digest=digest)
    assert reference.get("ended"), reference
    for size in (1, 100, 512, 700, len(stream)):
        cuts = list(range(size, len(stream), size))
        assert tap_result(stream, cuts, pure=False, digest=digest) == reference


def test_device_nodes_are_warned_about_the_same_way() -> None:
    got = tap_result(gnu_stream(), [], pure=False)
    assert [w for w in got["stats"]["warnings"] if "device node" in w] == [
        "chr: a device node; stored, but a restore skips it",
        "blk: a device node; stored, but a restore skips it",
    ]


def _corrupt(stream: bytes, at: int, raw: bytes) -> bytes:
    return stream[:at] + raw + stream[at + len(raw) :]


@pytest.mark.parametrize(
    "damage",
    [
        lambda s: _corrupt(s, 124, b"99999999999\0"),  # not octal: int() refuses it
        lambda s: _corrupt(s, 124, b"\0" * 12),  # no digits: size 0
        lambda s: _corrupt(s, 124, b" 17 \0\0\0\0\0\0\0\0"),  # spaces and NULs
        lambda s: _corrupt(s, 124, b"\x80" + bytes(10) + b"\x01"),  # base-256
        lambda s: _corrupt(s, 124, b"\xff" * 12),  # base-256 past 2**64
        lambda s: _corrupt(s, 124, b"-0000000001\0"),  # negative
        lambda s: s[: len(s) // 2],  # cut short
        lambda s: _corrupt(s, 1024 + 124, b"77777777777\0"),  # a size past the end
    ],
)
def test_broken_streams_fail_or_pass_as_the_python_tap_does(damage: Any) -> None:
    """Where the Python tap records something, the C tap records the same; where the Python tap fails
    (an error, or no end of archive: the backup then fails), so does the C tap, at the latest."""
    stream = damage(pax_stream())
    c, py = tap_result(stream, [], pure=False), tap_result(stream, [], pure=True)

    def failed(r: dict[str, Any]) -> bool:
        return "error" in r or not r["ended"]

    if failed(py):
        assert failed(c), (c, py)
    else:
        assert c == py
