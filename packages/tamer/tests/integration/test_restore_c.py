"""The compiled restore path (tamer._crestore) against the Python one it stands in for (issue 11).

The Python path is the reference: on the same archives, hostile ones included, both must leave the same
files on disk (content, mode, owner, mtime, holes, hard links, xattrs), report the same warnings and counts,
and refuse with the same error, word for word. Each archive is restored twice into the same folder, once
with TAMER_PURE_RESTORE=1, once without; verify (read_archive with no sink) is compared the same way.

TAMER_ATTACK_EXAMPLES (as test_restore_attack.py) sizes the random campaign.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import zstandard
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tamer.errors import TamerError
from tamer.volumes import archive as archive_mod
from tamer.volumes import restore as restore_mod
from tamer.volumes.archive import _header, read_archive
from tamer.volumes.restore import ZERO_BLOCK, restore_into

EXAMPLES = int(os.environ.get("TAMER_ATTACK_EXAMPLES", "200"))
MTIME = 1_600_000_000
ME = os.geteuid(), os.getegid()


@pytest.fixture(autouse=True)
def _compiled_built() -> None:
    if archive_mod.compiled_restore() is None and not os.environ.get("TAMER_PURE_RESTORE"):
        message = "tamer._crestore was not built (setup.py needs a C compiler and Python's headers)"
        if os.environ.get("CI"):
            pytest.fail(message)  # CI's machine has both: a missing build is a regression there
        pytest.skip(message)


# -- building archives byte by byte ------------------------------------------------------------------
def entry(
    name: bytes,
    data: bytes = b"",
    *,
    mode: int = 0o644,
    uid: int | None = None,
    gid: int | None = None,
    typeflag: bytes = b"0",
    link: bytes = b"",
) -> bytes:
    """One tar member as tamer's writer makes it (archive._header: ustar, PAX past its limits)."""
    h = _header(
        name,
        mode,
        ME[0] if uid is None else uid,
        ME[1] if gid is None else gid,
        len(data),
        MTIME,
        typeflag,
        link,
    )
    return h + data + bytes(-len(data) % 512)


def tar_bytes(members: list[bytes], files: dict[bytes, bytes], *, digest: str = "blake3") -> bytes:
    """header, data/, the members, an honest manifest of `files` (name below data/ -> content)."""
    algo = hashlib.sha256 if digest == "sha256" else __import__("blake3").blake3
    head = json.dumps({"format": 2, "volume": "c", "digest": digest}).encode()
    manifest = json.dumps(
        {
            "format": 2,
            "digest": digest,
            "files": {os.fsdecode(rel): [len(data), algo(data).hexdigest()] for rel, data in files.items()},
            "xattrs": {},
        }
    ).encode()
    return b"".join(
        [
            entry(b"tamer-backup.json", head),
            entry(b"data", mode=0o755, typeflag=b"5"),
            *members,
            entry(b"tamer-manifest.json", manifest),
            bytes(1024),
        ]
    )


def compress(raw: bytes, path: Path) -> Path:
    path.write_bytes(zstandard.ZstdCompressor().compress(raw))
    return path


def fingerprint(root: Path) -> dict[str, Any]:
    out: dict[str, Any] = {}
    inodes: dict[int, str] = {}
    for dirpath, dirnames, filenames in os.walk(os.fsencode(root)):
        for name in sorted(dirnames + filenames):
            p = os.path.join(dirpath, name)
            rel = os.fsdecode(os.path.relpath(p, os.fsencode(root)))
            s = os.lstat(p)
            e: dict[str, Any] = {"mode": s.st_mode, "uid": s.st_uid, "gid": s.st_gid, "mtime": s.st_mtime_ns}
            if stat.S_ISREG(s.st_mode):
                with open(p, "rb") as fh:
                    e["sha"] = hashlib.sha256(fh.read()).hexdigest()
                e["blocks"] = s.st_blocks  # holes: a sparse file written dense (or the reverse) differs
                if s.st_nlink > 1:
                    e["linked_with"] = inodes.setdefault(s.st_ino, rel)
            elif stat.S_ISLNK(s.st_mode):
                e["target"] = os.readlink(p)
            out[rel] = e
    s = root.stat()
    out["."] = {"mode": s.st_mode, "uid": s.st_uid, "gid": s.st_gid, "mtime": s.st_mtime_ns}
    return out


def outcome(arc: Path, target: Path, *, privileged: bool) -> dict[str, Any]:
    """What one restore of `arc` into the empty folder `target` did, or how it was refused."""
    try:
        done = restore_into(str(arc), str(target), privileged=privileged)
    except (TamerError, OSError) as exc:
        return {"error": type(exc).__name__, "message": str(exc), "left": sorted(os.listdir(target))}
    r = done.read
    return {
        "tree": fingerprint(target),
        "warnings": done.warnings,
        "counts": [done.dropped_privileged, done.privileged_seen, done.skipped_devices],
        "read": [r.files, r.entries, r.bytes, r.sha256, r.archive_bytes],
    }


def verified(arc: Path) -> dict[str, Any]:
    try:
        r = read_archive(str(arc))
    except TamerError as exc:
        return {"error": type(exc).__name__, "message": str(exc)}
    return {"read": [r.files, r.entries, r.bytes, r.sha256, r.archive_bytes]}


def both(arc: Path, target: Path, *, privileged: bool = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """(compiled, python) outcomes of restoring and of verifying `arc`; `target` is emptied after each."""
    results = []
    for pure in (False, True):
        if pure:
            os.environ["TAMER_PURE_RESTORE"] = "1"
        try:
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir()
            got = outcome(arc, target, privileged=privileged)
            got["verify"] = verified(arc)
            results.append(got)
        finally:
            os.environ.pop("TAMER_PURE_RESTORE", None)
            shutil.rmtree(target, ignore_errors=True)
    return results[0], results[1]


@pytest.fixture
def taken(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Counts the files the compiled path took (so a test knows it ran, not only the fallback)."""
    counts: list[int] = []
    real = archive_mod.compiled_restore

    def counting() -> Callable[..., Any] | None:
        extract = real()
        if extract is None:
            return None

        def wrapped(*args: Any) -> Any:
            result = extract(*args)
            counts.append(len(result[2]))
            return result

        return wrapped

    monkeypatch.setattr(archive_mod, "compiled_restore", counting)
    monkeypatch.setattr(restore_mod, "compiled_restore", counting)
    yield counts


# -- the cases -------------------------------------------------------------------------------------------
def sizes_case() -> tuple[list[bytes], dict[bytes, bytes]]:
    """Files of every size that matters (0, around a tar block, around and past ZERO_BLOCK, zero runs that
    become holes, a hole at the end) in the root and in folders, many per folder."""
    rnd = hashlib.sha256(b"seed").digest() * 8192
    contents = [
        b"",
        b"x",
        rnd[:511],
        rnd[:512],
        rnd[:513],
        rnd[: ZERO_BLOCK - 1],
        rnd[:ZERO_BLOCK],
        bytes(ZERO_BLOCK),
        bytes(ZERO_BLOCK) + b"tail",
        rnd[:1000] + bytes(2 * ZERO_BLOCK) + rnd[:10],
        rnd[:ZERO_BLOCK] + bytes(2 * ZERO_BLOCK),  # ends in a hole: ftruncate gives the size
        bytes(512),
    ]
    members: list[bytes] = []
    files: dict[bytes, bytes] = {}
    for d in (b"", b"a", b"a/b", b"c"):
        if d:
            members.append(entry(b"data/" + d, mode=0o750, typeflag=b"5"))
        for i in range(40):
            rel = (d + b"/" if d else b"") + b"f%02d" % i
            data = contents[i % len(contents)]
            members.append(entry(b"data/" + rel, data, mode=(0o600, 0o644, 0o755, 0o000)[i % 4]))
            files[rel] = data
    return members, files


def test_compiled_path_takes_plain_files_and_equals_python(tmp_path: Path, taken: list[int]) -> None:
    members, files = sizes_case()
    arc = compress(tar_bytes(members, files), tmp_path / "a.tar.zst")
    c, py = both(arc, tmp_path / "t")
    assert "error" not in c, c
    assert c == py
    assert sum(taken) >= len(files) - 4 * 2, taken  # all but about one per folder (Python opens it first)
    sha = compress(tar_bytes(members, files, digest="sha256"), tmp_path / "s.tar.zst")
    c, py = both(sha, tmp_path / "t")
    assert "error" not in c and c == py


def test_native_blake3_equals_the_blake3_package() -> None:
    """extract(..., factory=None) hashes in C (the vendored BLAKE3, small files side by side): every digest
    equals the blake3 package's, at each size around BLAKE3's chunk (1 KiB) and tree edges and the batch
    limit (64 KiB), in one buffer, so batched and streamed files mix."""
    extract = archive_mod.compiled_restore()
    assert extract is not None
    blake3 = __import__("blake3").blake3
    rnd = hashlib.sha256(b"b3").digest() * (1 << 16)  # 2 MiB of varied bytes
    sizes = sorted(
        {0, 1, 63, 64, 65, 511, 512, 513}
        | {k * 1024 + d for k in (1, 2, 3, 4, 8, 16, 17, 31, 32, 33, 63, 64, 65) for d in (-1, 0, 1)}
        | {200_000, 1 << 20}
    )
    members = [entry(b"data/f%03d" % i, rnd[i : i + size]) for i, size in enumerate(sizes)]
    buf = b"".join(members)
    consumed, _used, done = extract(buf, 0, -1, b"", {}, 0, 0, 0, None)
    assert consumed == len(buf) and len(done) == len(sizes)
    _c, _u, by_package = extract(buf, 0, -1, b"", {}, 0, 0, 0, blake3)
    want = [(f"f{i:03d}", size, blake3(rnd[i : i + size]).hexdigest()) for i, size in enumerate(sizes)]
    assert done == want
    assert by_package == want


def test_native_blake3_catches_one_changed_byte(tmp_path: Path, taken: list[int]) -> None:
    """A BLAKE3 archive restored through the C digests: one byte changed inside a small and inside a large
    file is refused, naming the file, on both paths, and nothing is left in the target."""
    rnd = hashlib.shake_256(b"flip").digest(160_000)  # no repeats: each file's bytes are found once
    files = {b"small": rnd[:3000], b"big": rnd[3000:153_000], b"other": rnd[153_000:153_900]}
    for victim in (b"small", b"big"):
        members = [entry(b"data/" + rel, data) for rel, data in files.items()]
        raw = bytearray(tar_bytes(members, files))
        at = raw.index(files[victim][:64]) + 1000
        raw[at] ^= 1
        arc = compress(bytes(raw), tmp_path / f"{victim.decode()}.tar.zst")
        c, py = both(arc, tmp_path / "t")
        assert c == py
        assert c["error"] == "BackupCorrupt", c
        assert "failed its checksum" in c["message"] and f"data/{victim.decode()}" in c["message"], c
        assert c["left"] == [] and c["verify"]["message"] == c["message"], c
    assert sum(taken) >= 2


@pytest.mark.parametrize("where", [0.3, 0.9])
def test_damaged_compressed_data_same_error(tmp_path: Path, where: float) -> None:
    """A flipped byte in the zstd stream (not in the tar inside it): the same BackupCorrupt, naming the same
    entry, whether the damage surfaces inside a run the compiled path takes or in the Python reader."""
    members, files = sizes_case()
    raw = bytearray(zstandard.ZstdCompressor(level=1).compress(tar_bytes(members, files)))
    raw[int(where * len(raw))] ^= 0x10
    arc = tmp_path / "d.tar.zst"
    arc.write_bytes(bytes(raw))
    c, py = both(arc, tmp_path / "t")
    assert c == py
    assert c["error"] == "BackupCorrupt", c


def _plain(n: int, d: bytes = b"a") -> tuple[list[bytes], dict[bytes, bytes]]:
    members = [entry(b"data/" + d, mode=0o755, typeflag=b"5")]
    files = {}
    for i in range(n):
        rel = d + b"/f%03d" % i
        data = b"content %d " % i * (i % 7)
        members.append(entry(b"data/" + rel, data))
        files[rel] = data
    return members, files


HOSTILE: dict[str, Callable[[], bytes]] = {}


def case(fn: Callable[[], bytes]) -> Callable[[], bytes]:
    HOSTILE[fn.__name__] = fn
    return fn


@case
def duplicate_file() -> bytes:
    members, files = _plain(20)
    return tar_bytes([*members, entry(b"data/a/f003", b"again")], files)


@case
def duplicate_inside_a_batch() -> bytes:
    members, files = _plain(20)
    members.insert(10, entry(b"data/a/f015", b"first"))
    return tar_bytes(members, files)


@case
def file_named_like_a_skipped_device() -> bytes:
    members, files = _plain(10)
    members += [entry(b"data/a/dev", typeflag=b"3"), entry(b"data/a/dev", b"x")]
    return tar_bytes(members, {**files, b"a/dev": b"x"})


@case
def dot_dot_in_the_middle() -> bytes:
    members, files = _plain(10)
    return tar_bytes([*members, entry(b"data/a/../y", b"esc")], {**files, b"y": b"esc"})


@case
def dot_and_empty_components() -> bytes:
    members, files = _plain(10)
    return tar_bytes([*members, entry(b"data/a/./g", b"1"), entry(b"data/a//h", b"2")], files)


@case
def hostile_names() -> bytes:
    members, files = _plain(5)
    for name in (b"new\nline", b"\xff\xfe-not-utf8", b"x" * 95, b"y" * 255, b"sp ace", "ünï".encode(), b"-"):
        members.append(entry(b"data/a/" + name, name))
        files[b"a/" + name] = name
    return tar_bytes(members, files)


@case
def hostile_names_duplicate_non_utf8() -> bytes:
    members, files = _plain(5)
    members += [entry(b"data/a/\xff", b"1"), entry(b"data/a/\xff", b"2")]
    return tar_bytes(members, {**files, b"a/\xff": b"2"})


@case
def file_below_a_file() -> bytes:
    members, files = _plain(5)
    return tar_bytes([*members, entry(b"data/a/f001/x", b"1")], files)


@case
def file_below_a_symlink() -> bytes:
    members, files = _plain(5)
    members += [entry(b"data/s", typeflag=b"2", link=b"/tmp"), entry(b"data/s/x", b"1")]
    return tar_bytes(members, files)


@case
def truncated_in_file_data() -> bytes:
    members, files = _plain(60)
    raw = tar_bytes(members, files)
    return raw[: raw.index(b"data/a/f040") + 512 + 10]  # f040 holds 55 bytes


@case
def truncated_in_a_header() -> bytes:
    members, files = _plain(60)
    raw = tar_bytes(members, files)
    return raw[: raw.index(b"data/a/f040") + 200]


@case
def flipped_header_checksum() -> bytes:
    members, files = _plain(60)
    raw = bytearray(tar_bytes(members, files))
    at = raw.index(b"data/a/f030")
    raw[at + 150] ^= 1  # inside the checksum field
    return bytes(raw)


@case
def flipped_header_name() -> bytes:
    members, files = _plain(60)
    raw = bytearray(tar_bytes(members, files))
    raw[raw.index(b"data/a/f031") + 8] ^= 2
    return bytes(raw)


@case
def flipped_file_data() -> bytes:
    members, files = _plain(60)
    raw = bytearray(tar_bytes(members, files))
    raw[raw.index(b"data/a/f040") + 512 + 3] ^= 0x20
    return bytes(raw)


@case
def extra_file_not_in_manifest() -> bytes:
    members, files = _plain(20)
    return tar_bytes([*members, entry(b"data/a/extra", b"e")], files)


@case
def file_missing_from_archive() -> bytes:
    members, files = _plain(20)
    return tar_bytes(members, {**files, b"a/ghost": b"g"})


@case
def files_after_the_manifest() -> bytes:
    members, files = _plain(20)
    return tar_bytes(members, files)[:-1024] + b"".join(entry(b"data/a/late%d" % i, b"l") for i in range(5))


@case
def files_before_the_header() -> bytes:
    members, files = _plain(5)
    return b"".join(entry(b"data/a/f%03d" % i, b"x") for i in range(5)) + tar_bytes(members, files)


@case
def zero_blocks_between_files() -> bytes:
    members, files = _plain(30)
    members.insert(15, bytes(1024))
    return tar_bytes(members, files)


@case
def hard_links_to_compiled_files() -> bytes:
    members, files = _plain(20)
    members += [
        entry(b"data/a/h1", typeflag=b"1", link=b"data/a/f005"),
        entry(b"data/h2", typeflag=b"1", link=b"data/a/f019"),
    ]
    return tar_bytes(members, files)


@case
def set_id_and_other_owners() -> bytes:
    members, files = _plain(5)
    for i, (mode, uid) in enumerate(
        [(0o4755, None), (0o2750, 1234), (0o6777, 0), (0o644, 1234), (0o1777, 4321)]
    ):
        rel = b"a/s%d" % i
        members.append(entry(b"data/" + rel, b"s" * i, mode=mode, uid=uid, gid=uid))
        files[rel] = b"s" * i
    return tar_bytes(members, files)


@case
def type_seven_and_gnu_magic() -> bytes:
    members, files = _plain(5)
    contig = bytearray(entry(b"data/a/c7", b"7"))
    contig[156:157] = b"7"
    contig[148:156] = b"%06o\0 " % (sum(contig[:148]) + 256 + sum(contig[156:512]))
    members.append(bytes(contig))
    files[b"a/c7"] = b"7"
    return tar_bytes(members, files)


@case
def odd_numeric_fields() -> bytes:
    members, files = _plain(5)
    for i, (field, value) in enumerate(
        [
            (slice(124, 136), b"     1      "),
            (slice(100, 108), b"0644    "),
            (slice(136, 148), b"\x80" + bytes(11)),
        ]
    ):
        m = bytearray(entry(b"data/a/o%d" % i, b"1"))
        m[field] = value
        m[148:156] = b"%06o\0 " % (sum(m[:148]) + 256 + sum(m[156:512]))
        members.append(bytes(m))
        files[b"a/o%d" % i] = b"1"
    return tar_bytes(members, files)


@pytest.mark.parametrize("name", sorted(HOSTILE))
@pytest.mark.parametrize("privileged", [False, True])
def test_hostile_archives_same_result_on_both_paths(tmp_path: Path, name: str, privileged: bool) -> None:
    arc = compress(HOSTILE[name](), tmp_path / "h.tar.zst")
    c, py = both(arc, tmp_path / "t", privileged=privileged)
    assert c == py


def test_budget_refused_at_the_same_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """NotEnoughSpace names the same file on both paths: the budget ends inside a run of plain files."""
    members, files = _plain(60)
    arc = compress(tar_bytes(members, files), tmp_path / "b.tar.zst")
    total = sum(len(d) for d in files.values())

    class Small:
        def __init__(self, bavail: int) -> None:
            self.f_bavail, self.f_frsize = bavail, 1

    for room in (total, total - 1, total // 2, 0):
        monkeypatch.setattr(os, "fstatvfs", lambda fd, r=room: Small(r))
        c, py = both(arc, tmp_path / "t")
        assert c == py
        assert ("error" in c) == (room < total), (room, c)


@pytest.mark.parametrize("short_of", ["inodes", "bytes"])
def test_out_of_space_midway_same_error_and_nothing_left(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, short_of: str
) -> None:
    """A filesystem that runs out of inodes, or of bytes (another writer filled it after the free-space check:
    the budget is made to say plenty), inside a run of plain files: the compiled path undoes the file it could
    not finish and hands it back, and both paths say NotEnoughSpace and leave the target empty."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    mnt = tmp_path / "small"
    mnt.mkdir()
    options = "size=64m,nr_inodes=40" if short_of == "inodes" else "size=256k"
    subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tamer-test", str(mnt)], check=True)
    try:
        members = [entry(b"data/a", mode=0o755, typeflag=b"5")]
        files = {}
        for i in range(60):
            files[b"a/f%03d" % i] = data = hashlib.sha256(b"%d" % i).digest() * 500  # 16,000 bytes
            members.append(entry(b"data/a/f%03d" % i, data))
        arc = compress(tar_bytes(members, files), tmp_path / "n.tar.zst")
        if short_of == "bytes":

            class Plenty:
                f_bavail, f_frsize = 1 << 40, 1

            monkeypatch.setattr(os, "fstatvfs", lambda fd: Plenty())
        c, py = both(arc, mnt / "t")
        assert c == py
        assert c["error"] == "NotEnoughSpace" and c["left"] == [], c
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


POWERLESS = """
import json, sys
sys.path.insert(0, sys.argv[1])
from pathlib import Path
import test_restore_c as t
out = []
for arc in sys.argv[3:]:
    c, py = t.both(Path(arc), Path(sys.argv[2]))
    out.append([c, py])
print(json.dumps(out))
"""


def test_as_a_powerless_user_both_paths_equal(tmp_path: Path) -> None:
    """Root without its capabilities (fchown to another owner fails with EPERM, ignored on both paths)."""
    arcs = []
    for name in (
        "set_id_and_other_owners",
        "hostile_names",
        "duplicate_file",
        "hard_links_to_compiled_files",
    ):
        arcs.append(str(compress(HOSTILE[name](), tmp_path / f"{name}.tar.zst")))
    proc = subprocess.run(
        [
            "setpriv",
            "--bounding-set=-all",
            "--inh-caps=-all",
            sys.executable,
            "-c",
            POWERLESS,
            str(Path(__file__).parent),
            str(tmp_path / "t"),
            *arcs,
        ],
        capture_output=True,
        text=True,
        env={k: v for k, v in os.environ.items() if k != "TAMER_PURE_RESTORE"},
    )
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    for c, py in results:
        assert c == py
    owners = {e["uid"] for e in results[0][0]["tree"].values()}
    assert owners == {os.geteuid()}, owners  # the other owners were not given: no capability to


# -- a random campaign: mutated archives of mostly plain files --------------------------------------------
names = st.sampled_from(
    [b"a", b"b", b"a/x", b"a/y", b"b/x", b"\xff", b"a/\n", b"a/..", b"a/.", b"dev", b"a/f"]
)
spec = st.lists(
    st.tuples(
        st.sampled_from(["file"] * 8 + ["dir"] * 2 + ["chr", "symlink", "hardlink"]),
        names,
        st.sampled_from([0, 1, 511, 512, 513, 4000, ZERO_BLOCK, ZERO_BLOCK + 1]),
        st.sampled_from([0o644, 0o4755, 0o2700, 0o000]),
        st.sampled_from([None, 1234]),
        st.booleans(),
    ),
    max_size=25,
)


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    entries=spec,
    honest=st.booleans(),
    cut=st.one_of(st.none(), st.floats(0, 1)),
    flip=st.one_of(st.none(), st.tuples(st.floats(0, 1), st.integers(0, 7))),
    privileged=st.booleans(),
)
def test_random_archives_same_result_on_both_paths(
    tmp_path: Path,
    entries: list[tuple[str, bytes, int, int, int | None, bool]],
    honest: bool,
    cut: float | None,
    flip: tuple[float, int] | None,
    privileged: bool,
) -> None:
    members: list[bytes] = []
    files: dict[bytes, bytes] = {}
    for kind, name, size, mode, uid, zeros in entries:
        full = b"data/" + name
        if kind == "file":
            data = bytes(size) if zeros else (name * (size // max(1, len(name)) + 1))[:size]
            members.append(entry(full, data, mode=mode, uid=uid, gid=uid))
            files[name] = data
        elif kind == "dir":
            members.append(entry(full, mode=0o755, typeflag=b"5"))
        elif kind == "chr":
            members.append(entry(full, typeflag=b"3"))
        else:
            members.append(entry(full, typeflag=b"2" if kind == "symlink" else b"1", link=b"data/a/x"))
    raw = bytearray(tar_bytes(members, files if honest else {**files, b"a/x": b"?"}))
    if flip is not None:
        raw[int(flip[0] * (len(raw) - 1))] ^= 1 << flip[1]
    if cut is not None:
        raw = raw[: int(cut * len(raw))]
    work = Path(os.fsdecode(tmp_path)) / hashlib.sha256(bytes(raw)).hexdigest()[:12]
    work.mkdir(exist_ok=True)
    arc = compress(bytes(raw), work / "r.tar.zst")
    try:
        c, py = both(arc, work / "t", privileged=privileged)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    assert c == py
