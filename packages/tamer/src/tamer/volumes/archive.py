"""The backup archive format: a tar stream (PAX) compressed with zstd, checksums in a manifest.

Layout, in order:
    tamer-backup.json     header: format, volume name, when, where the data lived
    data                  the volume's root folder (its mode, owner, times)
    data/...              every entry below it (regular files, folders, symlinks, hard links, fifos)
    tamer-manifest.json   sha256 and size of every regular file, xattrs of every entry, counts

The manifest comes last so a backup reads each file once; a truncated archive
therefore lacks it and is refused. Times are whole seconds (as GNU tar's
default format); owners are numeric ids; xattrs ride in the manifest (base64)
because PAX headers cannot carry arbitrary bytes portably. Sparse files are
stored in full (zeros compress to almost nothing) and written back sparse.

`write_archive` and `read_archive` are the two halves; backup.py puts them to use.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import stat
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard

from tamer.errors import BackupCorrupt

FORMAT = 1
HEADER_NAME = "tamer-backup.json"
MANIFEST_NAME = "tamer-manifest.json"
DATA = "data"
# Writes to the compressor are batched: one call per ~1 MiB instead of one per header.
FLUSH_AT = 1 << 20
READ_WHOLE = 8 << 20  # files up to this size are read in one call
CHUNK = 1 << 20
ZSTD_LEVEL = 3  # zstd's own default, as `zstd` on the command line
BLOCK = tarfile.BLOCKSIZE


@dataclass
class WriteStats:
    files: int = 0
    entries: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


class _HashingWriter:
    """A file-like sink that counts and hashes what passes through to `raw`."""

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self.sha.update(data)
        self.size += len(data)
        return self.raw.write(data)

    def flush(self) -> None:
        self.raw.flush()


def _scan(root: str) -> Iterator[tuple[str, str, os.stat_result]]:
    """(relative path, absolute path, lstat) for every entry below root, folders before their contents."""
    stack = [""]
    while stack:
        rel_dir = stack.pop()
        abs_dir = os.path.join(root, rel_dir) if rel_dir else root
        with os.scandir(abs_dir) as it:
            entries = sorted(it, key=lambda e: e.name)
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            st = entry.stat(follow_symlinks=False)
            yield rel, entry.path, st
            if stat.S_ISDIR(st.st_mode):
                subdirs.append(rel)
        stack.extend(reversed(subdirs))


def _xattrs(path: str) -> dict[str, str]:
    try:
        names = os.listxattr(path, follow_symlinks=False)
    except OSError:
        return {}
    out = {}
    for n in names:
        try:
            out[n] = base64.b64encode(os.getxattr(path, n, follow_symlinks=False)).decode()
        except OSError:
            continue
    return out


def _info(name: str, st: os.stat_result) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.mode = stat.S_IMODE(st.st_mode)
    info.uid = st.st_uid
    info.gid = st.st_gid
    info.mtime = int(st.st_mtime)
    info.uname = info.gname = ""
    return info


def write_archive(root: str, out: IO[bytes], header: dict[str, Any]) -> tuple[WriteStats, str, int]:
    """Write the folder `root` as a compressed archive to `out`.

    Returns (stats, sha256 of the compressed bytes, compressed size). A file
    that changes size while being read is stored as read (padded or cut to the
    size first seen) and reported in stats.warnings; pause the users for a
    consistent copy.
    """
    stats = WriteStats()
    hashed = _HashingWriter(out)
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, threads=1)
    files: dict[str, Any] = {}
    xattrs: dict[str, dict[str, str]] = {}
    links: dict[tuple[int, int], str] = {}
    buf = bytearray()
    with cctx.stream_writer(hashed, closefd=False) as zw:  # type: ignore[arg-type]
        def emit(data: bytes | bytearray | memoryview) -> None:
            nonlocal buf
            buf += data
            if len(buf) >= FLUSH_AT:
                zw.write(buf)
                buf = bytearray()

        def add_bytes(name: str, payload: bytes) -> None:
            info = tarfile.TarInfo(name)
            info.size = len(payload)
            info.mode = 0o600
            emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            emit(payload)
            emit(b"\0" * (-len(payload) % BLOCK))

        add_bytes(HEADER_NAME, json.dumps({**header, "format": FORMAT}, sort_keys=True).encode())
        root_info = _info(DATA, os.stat(root))
        root_info.type = tarfile.DIRTYPE
        emit(root_info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
        root_x = _xattrs(root)
        if root_x:
            xattrs[""] = root_x
        for rel, path, st in _scan(root):
            name = f"{DATA}/{rel}"
            info = _info(name, st)
            mode = st.st_mode
            data: bytes | None = None
            if stat.S_ISREG(mode):
                key = (st.st_dev, st.st_ino)
                if st.st_nlink > 1 and key in links:
                    info.type = tarfile.LNKTYPE
                    info.linkname = links[key]
                else:
                    if st.st_nlink > 1:
                        links[key] = name
                    info.size = st.st_size
                    data = b""
            elif stat.S_ISDIR(mode):
                info.type = tarfile.DIRTYPE
            elif stat.S_ISLNK(mode):
                info.type = tarfile.SYMTYPE
                info.linkname = os.readlink(path)
            elif stat.S_ISFIFO(mode):
                info.type = tarfile.FIFOTYPE
            else:
                stats.warnings.append(f"{rel}: skipped (a socket or device node is not volume data)")
                continue
            x = _xattrs(path)
            if x:
                xattrs[rel] = x
            stats.entries += 1
            emit(info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape"))
            if data is None:
                continue
            size = st.st_size
            sha = hashlib.sha256()
            written = 0
            with open(path, "rb", buffering=0) as f:
                if size <= READ_WHOLE:
                    chunk = f.read(size)
                    sha.update(chunk)
                    emit(chunk)
                    written = len(chunk)
                else:
                    while written < size:
                        chunk = f.read(min(CHUNK, size - written))
                        if not chunk:
                            break
                        sha.update(chunk)
                        emit(chunk)
                        written += len(chunk)
            if written < size:
                stats.warnings.append(f"{rel}: shrank while being read; stored {written} of {size} bytes "
                                      "padded with zeros (pause its users for a consistent copy)")
                pad = b"\0" * (size - written)
                sha.update(pad)
                emit(pad)
            elif os.stat(path, follow_symlinks=False).st_size != size:
                stats.warnings.append(f"{rel}: changed size while being read; stored the first {size} bytes")
            emit(b"\0" * (-size % BLOCK))
            files[rel] = [size, sha.hexdigest()]
            stats.files += 1
            stats.bytes += size
        manifest = {"format": FORMAT, "files": files, "xattrs": xattrs, "entries": stats.entries,
                    "bytes": stats.bytes}
        add_bytes(MANIFEST_NAME, json.dumps(manifest, separators=(",", ":")).encode())
        emit(b"\0" * (2 * BLOCK))
        zw.write(buf)
    return stats, hashed.sha.hexdigest(), hashed.size


# -- reading --------------------------------------------------------------------
class _HashingReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)  # type: ignore[attr-defined]
        if n:
            self.sha.update(memoryview(b)[:n])
            self.size += n
        return int(n or 0)


@dataclass
class ReadResult:
    header: dict[str, Any]
    manifest: dict[str, Any]
    files: int
    entries: int
    bytes: int
    sha256: str
    archive_bytes: int


def _file_hash(stream: IO[bytes], size: int, on_chunk: Callable[[bytes], None] | None) -> tuple[str, int]:
    sha = hashlib.sha256()
    got = 0
    while got < size:
        chunk = stream.read(min(CHUNK, size - got))
        if not chunk:
            break
        sha.update(chunk)
        if on_chunk is not None:
            on_chunk(chunk)
        got += len(chunk)
    return sha.hexdigest(), got


FileSink = Callable[[tarfile.TarInfo], "Callable[[bytes], None] | None"]
EntrySink = Callable[[tarfile.TarInfo], None]


def read_archive(path: str, *, on_file: FileSink | None = None, on_entry: EntrySink | None = None) -> ReadResult:
    """Stream through the archive at `path`, checking every file's checksum against the manifest.

    on_entry(member) is called for each non-regular entry under data/ (the
    root folder included); on_file(member) for each regular file returns a
    callable that receives its bytes (or None to only check them). Raises
    BackupCorrupt naming the file that failed: damaged compressed data, a
    truncated archive, a checksum or size mismatch, a file missing from or
    extra to the manifest.
    """
    seen: dict[str, tuple[int, str]] = {}
    header: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    entries = 0
    current = "the start of the archive"
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BackupCorrupt(f"cannot read backup {path}: {exc.strerror}; expected a readable tamer backup "
                            "file") from exc
    hashing = _HashingReader(raw)
    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BufferedReader(hashing, CHUNK))
        with tarfile.open(fileobj=reader, mode="r|") as tar:
            for member in tar:
                current = member.name
                if manifest is not None:
                    raise BackupCorrupt(f"{path}: entry {member.name} after the manifest; expected the manifest "
                                        "last; this is not a backup tamer wrote")
                if member.name in (HEADER_NAME, MANIFEST_NAME):
                    stream = tar.extractfile(member)
                    assert stream is not None
                    try:
                        meta = json.loads(stream.read())
                    except ValueError as exc:
                        raise BackupCorrupt(f"{path}: {member.name} is not valid JSON; the archive is damaged")\
                            from exc
                    if member.name == HEADER_NAME:
                        header = meta
                    else:
                        manifest = meta
                    continue
                if header is None:
                    raise BackupCorrupt(f"{path}: starts with {member.name}, not {HEADER_NAME}; expected a backup "
                                        "written by `tamer volume backup`")
                if member.isreg():
                    sink = on_file(member) if on_file is not None else None
                    stream = tar.extractfile(member)
                    assert stream is not None
                    digest, got = _file_hash(stream, member.size, sink)
                    if got != member.size:
                        raise BackupCorrupt(f"{path}: {member.name} is truncated ({got} of {member.size} bytes); "
                                            "the archive was cut short; restore from another copy")
                    seen[member.name[len(DATA) + 1:]] = (member.size, digest)
                else:
                    if on_entry is not None:
                        on_entry(member)
                entries += 1
        # read what follows the end-of-archive blocks, so the zstd frame checksum is checked too
        while reader.read(CHUNK):
            pass
    except BackupCorrupt:
        raise
    except zstandard.ZstdError as exc:
        raise BackupCorrupt(f"{path}: the compressed data is damaged while reading {current} ({exc}); expected an "
                            "intact tamer backup; restore from another copy") from exc
    except (tarfile.TarError, EOFError) as exc:
        raise BackupCorrupt(f"{path}: the archive is truncated or damaged at {current} ({exc}); expected an "
                            "intact tamer backup; restore from another copy") from exc
    finally:
        raw.close()
    if header is None:
        raise BackupCorrupt(f"{path}: no {HEADER_NAME}; expected a backup written by `tamer volume backup`")
    if manifest is None:
        raise BackupCorrupt(f"{path}: the archive ends after {current} without its manifest: it was truncated; "
                            "restore from another copy")
    expected: dict[str, list[Any]] = manifest.get("files") or {}
    for rel, (size, digest) in seen.items():
        want = expected.get(rel)
        if want is None:
            raise BackupCorrupt(f"{path}: data/{rel} is not in the manifest; the archive was altered")
        if int(want[0]) != size or str(want[1]) != digest:
            raise BackupCorrupt(f"{path}: data/{rel} failed its checksum (expected sha256 {want[1]}, "
                                f"{want[0]} bytes; got {digest}, {size} bytes); the archive is damaged; "
                                "restore from another copy")
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise BackupCorrupt(f"{path}: data/{missing[0]} (and {len(missing) - 1} more) listed in the manifest is "
                            "missing from the archive; the archive was altered")
    return ReadResult(header=header, manifest=manifest, files=len(seen), entries=entries - 1,
                      bytes=sum(s for s, _ in seen.values()), sha256=hashing.sha.hexdigest(),
                      archive_bytes=hashing.size)
