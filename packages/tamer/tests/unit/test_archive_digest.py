"""Archive digests (issue 11): new archives name BLAKE3 in their header (format 2) and checksum every file
with it; format-1 archives (sha256, no digest named) stay readable; a header or manifest that names another
digest, or two that disagree, is refused. Checked against blake3 and hashlib computed here, on both writers."""

from __future__ import annotations

import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import blake3
import pytest
import zstandard
from tamer.errors import BackupCorrupt, TamerError
from tamer.volumes.archive import read_archive
from tamer.volumes.archive_pack import packer_module
from tamer.volumes.archive_write import gnu_tar, write_archive
from tamer.volumes.restore import restore_into

WRITERS = [
    "python",
    *(["tar"] if gnu_tar("auto") else []),
    *(["compiled"] if packer_module("auto", "blake3") else []),
]


def _tree(root: Path) -> dict[str, bytes]:
    files = {"a.txt": b"alpha\n", "sub/b.bin": os.urandom(300_000), "sub/empty": b"", "c": b"x" * 70_000}
    for rel, data in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(data)
    return files


def _members(path: Path) -> dict[str, bytes]:
    raw = zstandard.ZstdDecompressor().stream_reader(path.open("rb")).read()
    out = {}
    with tarfile.open(fileobj=io.BytesIO(raw), mode="r:", ignore_zeros=True) as tar:
        for m in tar:
            if m.name in ("tamer-backup.json", "tamer-manifest.json"):
                f = tar.extractfile(m)
                assert f is not None
                out[m.name] = f.read()
    return out


@pytest.mark.parametrize("writer", WRITERS)
@pytest.mark.parametrize("digest", ["blake3", "sha256", None])
def test_new_archives_use_blake3_and_sha256_archives_stay_readable(
    tmp_path: Path, writer: str, digest: str | None
) -> None:
    src = tmp_path / "src"
    src.mkdir()
    files = _tree(src)
    out = tmp_path / "a.tar.zst"
    if writer == "compiled" and digest == "sha256":  # a format-1 archive is never the compiled writer's
        with out.open("wb") as f, pytest.raises(TamerError, match="BLAKE3 archives only"):
            write_archive(str(src), f, {"volume": "v"}, writer=writer, digest=digest)
        return
    with out.open("wb") as f:
        write_archive(str(src), f, {"volume": "v"}, writer=writer, digest=digest)
    meta = _members(out)
    header = json.loads(meta["tamer-backup.json"])
    manifest = json.loads(meta["tamer-manifest.json"])
    want = digest or "blake3"  # the default, blake3 being installed
    if want == "sha256":  # exactly the format-1 archive of earlier tamers: no digest named anywhere
        assert header["format"] == 1 and "digest" not in header and "digest" not in manifest
        expect = {rel: hashlib.sha256(data).hexdigest() for rel, data in files.items()}
    else:
        assert header["format"] == 2 and header["digest"] == manifest["digest"] == "blake3"
        expect = {rel: blake3.blake3(data).hexdigest() for rel, data in files.items()}
    assert {rel: v[1] for rel, v in manifest["files"].items()} == expect
    assert {rel: v[0] for rel, v in manifest["files"].items()} == {r: len(d) for r, d in files.items()}
    r = read_archive(str(out))
    assert (r.files, r.bytes) == (len(files), sum(map(len, files.values())))
    dest = tmp_path / "dest"
    dest.mkdir()
    restore_into(str(out), str(dest))
    assert {rel: (dest / rel).read_bytes() for rel in files} == files


def _archive(path: Path, header: dict[str, object], manifest: dict[str, object], payload: bytes) -> None:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for name, data in (("tamer-backup.json", json.dumps(header).encode()),):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        root = tarfile.TarInfo("data")
        root.type = tarfile.DIRTYPE
        tar.addfile(root)
        info = tarfile.TarInfo("data/f")
        info.size = len(payload)
        tar.addfile(info, io.BytesIO(payload))
        data = json.dumps(manifest).encode()
        info = tarfile.TarInfo("tamer-manifest.json")
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    path.write_bytes(zstandard.ZstdCompressor().compress(buf.getvalue()))


PAYLOAD = b"the data\n"
B3 = blake3.blake3(PAYLOAD).hexdigest()
SHA = hashlib.sha256(PAYLOAD).hexdigest()


@pytest.mark.parametrize(
    ("header", "manifest", "fragment"),
    [
        ({"format": 2, "digest": "blake3"}, {"digest": "blake3", "files": {"f": [9, B3]}}, None),
        ({"format": 1}, {"format": 1, "files": {"f": [9, SHA]}}, None),
        ({}, {"files": {"f": [9, SHA]}}, None),  # no format: the first archives, sha256
        (
            {"format": 2, "digest": "md5"},
            {"digest": "md5", "files": {"f": [9, SHA]}},
            "names the digest 'md5'",
        ),
        ({"format": 3, "digest": "blake3"}, {"digest": "blake3", "files": {"f": [9, B3]}}, "format 3"),
        ({"format": True}, {"files": {"f": [9, SHA]}}, "format True"),
        # the header and the manifest disagree: refused, whichever digest the values really are
        (
            {"format": 2, "digest": "blake3"},
            {"digest": "sha256", "files": {"f": [9, B3]}},
            "not the header's",
        ),
        ({"format": 1}, {"digest": "blake3", "files": {"f": [9, SHA]}}, "not the header's"),
        # a format-1 header cannot switch its digest: its files are checked with sha256
        ({"format": 1, "digest": "blake3"}, {"files": {"f": [9, B3]}}, "failed its checksum"),
        (
            {"format": 2, "digest": "blake3"},
            {"digest": "blake3", "files": {"f": [9, SHA]}},
            "expected blake3",
        ),
        ({"format": 2, "digest": "blake3"}, {"digest": "blake3", "files": ["f"]}, "not a mapping"),
    ],
)
def test_digest_named_by_the_header_is_the_one_checked(
    tmp_path: Path, header: dict[str, object], manifest: dict[str, object], fragment: str | None
) -> None:
    path = tmp_path / "a.tar.zst"
    _archive(path, {"volume": "v", **header}, manifest, PAYLOAD)
    dest = tmp_path / "dest"
    dest.mkdir()
    if fragment is None:
        assert read_archive(str(path)).files == 1
        restore_into(str(path), str(dest))
        assert (dest / "f").read_bytes() == PAYLOAD
        return
    with pytest.raises(BackupCorrupt, match=fragment):
        read_archive(str(path))
    with pytest.raises(BackupCorrupt, match=fragment):
        restore_into(str(path), str(dest))
    assert os.listdir(dest) == []  # a refused restore leaves nothing


def test_a_damaged_byte_fails_the_blake3_checksum(tmp_path: Path) -> None:
    src = tmp_path / "src"
    src.mkdir()
    (src / "f").write_bytes(b"a" * 5000)
    raw = io.BytesIO()
    write_archive(str(src), raw, {"volume": "v"}, writer="python")
    plain = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(raw.getvalue())).read()
    at = plain.index(b"a" * 5000) + 100
    bad = plain[:at] + b"b" + plain[at + 1 :]
    path = tmp_path / "bad.tar.zst"
    path.write_bytes(zstandard.ZstdCompressor().compress(bad))
    with pytest.raises(BackupCorrupt, match=r"data/f failed its checksum \(expected blake3"):
        read_archive(str(path))
