"""Writing the backup archive (format in archive.py): GNU tar through a tap, or pure Python.

With GNU tar (the usual case) tar reads the folder in a process of its own
and its stream passes through unchanged while _TarTap hashes every file and
collects xattrs for the manifest; compression and the archive's own sha256
each run on a thread of their own, so the stages overlap as in
`tar | zstd`. Without GNU tar (or with writer="python") a pure Python
writer reads files on a small thread pool and writes the same format.

Sizes of any magnitude: a file of 8 GiB or more does not fit the ustar size
field, so both writers put its size in a PAX record (GNU tar does so itself)
and the tap reads it from there. Large files are streamed, never held whole
in memory.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import hashlib
import json
import os
import queue
import shutil
import stat
import subprocess
import tempfile
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard

from tamer.errors import TamerError
from tamer.volumes.archive import (
    _TYPE_DIR,
    _TYPE_FIFO,
    _TYPE_LNK,
    _TYPE_REG,
    _TYPE_SYM,
    _ZERO_BLOCK,
    BLOCK,
    CHUNK,
    DATA,
    FORMAT,
    HEADER_NAME,
    MANIFEST_NAME,
    _cstr,
    _header,
    _num,
    _pax_records,
)

# Writes to the compressor are batched: one call per ~1 MiB instead of one per header.
FLUSH_AT = 1 << 20
ZSTD_LEVEL = 3  # zstd's own default, as `zstd` on the command line
# Files above this size are streamed by the writing thread in chunks instead of read whole by the pool.
STREAM_AT = 8 << 20
WRITERS = ("auto", "tar", "python")


@dataclass
class WriteStats:
    files: int = 0
    entries: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


class _HashingWriter:
    """A file-like sink that counts and hashes (on a thread of its own) what passes through to `raw`.

    Hashing the compressed output on the compressing thread would put a
    second full pass in series with compression; hashlib releases the GIL,
    so a thread lets it overlap. Call close() before reading `sha`.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._hash, name="tamer-archive-sha", daemon=True)
        self._thread.start()

    def _hash(self) -> None:
        while (item := self._queue.get()) is not None:
            self.sha.update(item)

    def write(self, data: bytes | bytearray | memoryview) -> int:
        chunk = bytes(data)
        self._queue.put(chunk)
        self.size += len(chunk)
        return self.raw.write(chunk)

    def flush(self) -> None:
        self.raw.flush()

    def close(self) -> None:
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()


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


def _read_file(path: str, size: int) -> tuple[bytes, int]:
    """The first `size` bytes of a file (padded with zeros if it shrank) and how many were really there."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        data = os.read(fd, size) if size else b""
        if len(data) < size:
            parts = [data]
            got = len(data)
            while got < size:
                more = os.read(fd, min(CHUNK << 4, size - got))
                if not more:
                    break
                parts.append(more)
                got += len(more)
            data = b"".join(parts)
    finally:
        os.close(fd)
    real = len(data)
    if real < size:
        data += bytes(size - real)
    return data, real


def _stream_file(e: _Entry, write: Callable[[bytes], Any]) -> tuple[str, int]:
    """Write one large file's header and its `e.size` bytes (padded with zeros if it shrank) in chunks.

    Returns (sha256 of what was stored, bytes really read). Runs of zeros in
    sparse files are read as zeros, not skipped: the stream is a plain tar
    any tool can extract; restore writes them back as holes.
    """
    write(_header(e.name, e.perm, e.uid, e.gid, e.size, e.mtime, _TYPE_REG))
    sha = hashlib.sha256()
    real = 0
    fd = os.open(e.path, os.O_RDONLY | os.O_NOFOLLOW)
    try:
        while real < e.size:
            chunk = os.read(fd, min(CHUNK << 3, e.size - real))
            if not chunk:
                break
            sha.update(chunk)
            write(chunk)
            real += len(chunk)
    finally:
        os.close(fd)
    left = e.size - real
    while left:
        pad = bytes(min(CHUNK << 3, left))
        sha.update(pad)
        write(pad)
        left -= len(pad)
    if e.size % BLOCK:
        write(_ZERO_BLOCK[: BLOCK - e.size % BLOCK])
    return sha.hexdigest(), real


READ_THREADS = 2
BATCH = 256
READ_AHEAD = 4


@dataclass
class _Entry:
    rel: str
    path: str
    name: bytes
    perm: int
    uid: int
    gid: int
    mtime: int
    size: int
    typeflag: bytes
    link: bytes | None = None  # hard link to this earlier name
    target: bytes = b""  # symlink target


def _read_batch(batch: list[_Entry]) -> list[tuple[bytes, int, str, dict[str, str]]]:
    """(data, bytes really read, sha256, xattrs) for each entry; data only for small regular files
    (large ones are streamed when written)."""
    out = []
    for e in batch:
        x = _xattrs(e.path)
        if e.typeflag == _TYPE_REG and e.link is None and e.size <= STREAM_AT:
            data, real = _read_file(e.path, e.size)
            out.append((data, real, hashlib.sha256(data).hexdigest(), x))
        else:
            out.append((b"", 0, "", x))
    return out


def gnu_tar(writer: str = "auto") -> str | None:
    """GNU tar's path for `writer` ("auto": when installed; "tar": required; "python": never)."""
    if writer not in WRITERS:
        raise TamerError(f"archive writer {writer!r} is unknown; expected one of {', '.join(WRITERS)}")
    if writer == "python":
        return None
    found = _find_gnu_tar()
    if found is None and writer == "tar":
        raise TamerError(
            "GNU tar was asked for as the archive writer but is not installed; expected `tar "
            "--version` to say GNU tar; install it or use the python writer"
        )
    return found


@functools.cache
def _find_gnu_tar() -> str | None:
    path = shutil.which("tar")
    if path is None:
        return None
    try:
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return None
    return path if "GNU tar" in out else None


class _TarTap:
    """Watches a tar stream go by, chunk by chunk: hashes file contents, collects xattrs, counts.

    It never changes or copies the stream, so the chunks themselves go on to
    the compressor whole (one call per MiB, not three per file). tar's own
    end-of-archive zeros stay in the stream; the manifest follows them and
    the reader reads past zero blocks (as `tar --ignore-zeros` does).
    """

    def __init__(self, stats: WriteStats, files: dict[str, Any], xattrs: dict[str, dict[str, str]]) -> None:
        self.stats, self.files, self.xattrs = stats, files, xattrs
        self.mode = "header"  # header, ext (an extended header's payload), data, skip
        self.need = BLOCK
        self.acc = bytearray()
        self.left = 0
        self.pad = 0
        self.ext_type = b""
        self.ext_size = 0
        self.pax: dict[str, str] = {}
        self.sha = hashlib.sha256()
        self.rel = ""
        self.size = 0
        self.ended = False

    def feed(self, chunk: bytes) -> None:
        mv = memoryview(chunk)
        i, n = 0, len(chunk)
        while i < n and not self.ended:
            if self.mode == "data":
                take = min(self.left, n - i)
                self.sha.update(mv[i : i + take])
                i += take
                self.left -= take
                if not self.left:
                    self._file_done()
                continue
            if self.mode == "skip":
                take = min(self.left, n - i)
                i += take
                self.left -= take
                if not self.left:
                    self.mode, self.need = "header", BLOCK
                continue
            if not self.acc and n - i >= self.need:
                block = bytes(mv[i : i + self.need])
                i += self.need
            else:
                take = min(self.need - len(self.acc), n - i)
                self.acc += mv[i : i + take]
                i += take
                if len(self.acc) < self.need:
                    continue
                block, self.acc = bytes(self.acc), bytearray()
            if self.mode == "ext":
                self._ext(block)
            elif block == _ZERO_BLOCK:
                self.ended = True
            else:
                self._header(block)

    def _ext(self, payload: bytes) -> None:
        body = payload[: self.ext_size]
        if self.ext_type == b"x":
            self.pax = _pax_records(body)
        elif self.ext_type == b"L":
            self.pax["path"] = os.fsdecode(_cstr(body))
        self.mode, self.need = "header", BLOCK

    def _header(self, h: bytes) -> None:
        typeflag = h[156:157]
        size = _num(h[124:136])
        if typeflag not in (b"x", b"g", b"L", b"K") and "size" in self.pax:
            size = int(self.pax["size"])  # 8 GiB and more: the ustar field cannot hold it (failure 5)
        if typeflag in (b"x", b"g", b"L", b"K"):
            self.ext_type, self.ext_size = typeflag, size
            self.mode, self.need = "ext", size + (-size % BLOCK)
            if not self.need:
                self._ext(b"")
            return
        name = self.pax.get("path")
        if name is None:
            raw = _cstr(h[0:100])
            prefix = _cstr(h[345:500]) if h[257:262] == b"ustar" else b""
            name = os.fsdecode(prefix + b"/" + raw if prefix else raw)
        rel = name.rstrip("/").removeprefix(DATA).removeprefix("/")
        x = {
            k[len("SCHILY.xattr.") :]: base64.b64encode(v.encode("utf-8", "surrogateescape")).decode()
            for k, v in self.pax.items()
            if k.startswith("SCHILY.xattr.")
        }
        if x:
            self.xattrs[rel] = x
        self.pax = {}
        if rel:
            self.stats.entries += 1
        if typeflag in (b"3", b"4"):
            self.stats.warnings.append(f"{rel}: a device node; stored, but a restore skips it")
        if typeflag in (b"0", b"\0", b"7"):
            self.rel, self.size, self.sha = rel, size, hashlib.sha256()
            self.pad = -size % BLOCK
            if size:
                self.mode, self.left = "data", size
            else:
                self._file_done()
        elif size and typeflag not in (b"1", b"2", b"5"):
            self.mode, self.left = "skip", size + (-size % BLOCK)

    def _file_done(self) -> None:
        self.files[self.rel] = [self.size, self.sha.hexdigest()]
        self.stats.files += 1
        self.stats.bytes += self.size
        if self.pad:
            self.mode, self.left = "skip", self.pad
        else:
            self.mode, self.need = "header", BLOCK


def _forward_tar(
    tar: str,
    root: str,
    write: Callable[[bytes], Any],
    stats: WriteStats,
    files: dict[str, Any],
    xattrs: dict[str, dict[str, str]],
) -> None:
    """Let GNU tar read the folder (a process of its own, like `tar | zstd`) and pass its stream on.

    The stream goes to the compressor unchanged up to tar's end-of-archive
    marker, while _TarTap hashes file contents and collects xattrs for the
    manifest. Names are rewritten by tar itself (./x -> data/x, symlink
    targets untouched); owners numeric; times whole seconds; xattrs in PAX
    records (SCHILY.xattr.*).
    """
    cmd = [
        tar,
        "--create",
        "--file=-",
        "--blocking-factor=256",
        "--directory",
        root,
        "--format=posix",
        "--xattrs",
        "--xattrs-include=*",
        "--numeric-owner",
        "--pax-option=delete=atime,delete=ctime,delete=mtime",
        r"--transform=s,^\.,data,S",
        ".",
    ]
    tap = _TarTap(stats, files, xattrs)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, bufsize=0)
        assert proc.stdout is not None
        with contextlib.suppress(OSError):  # let tar run up to 1 MiB ahead of us, not 64 KiB
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        fd = proc.stdout.fileno()
        # The tap (parsing, sha256) runs on its own thread: hashing releases the GIL, so it overlaps
        # with compression on this one and tar in its process, three stages as in `tar | zstd`.
        chunks: queue.Queue[bytes | None] = queue.Queue(maxsize=16)
        failed: list[BaseException] = []

        def tap_loop() -> None:
            try:
                while (item := chunks.get()) is not None:
                    tap.feed(item)
            except BaseException as exc:  # handed to the main thread below
                failed.append(exc)
                while chunks.get() is not None:
                    pass

        # Compression too gets a thread of its own, single-threaded inside zstd (its multi-threaded
        # mode costs more CPU for the same work): tar, tap and compressor run side by side.
        to_compress: queue.Queue[bytes | None] = queue.Queue(maxsize=16)

        def compress_loop() -> None:
            try:
                while (item := to_compress.get()) is not None:
                    write(item)
            except BaseException as exc:
                failed.append(exc)
                while to_compress.get() is not None:
                    pass

        tapper = threading.Thread(target=tap_loop, name="tamer-backup-tap", daemon=True)
        compressor = threading.Thread(target=compress_loop, name="tamer-backup-zstd", daemon=True)
        tapper.start()
        compressor.start()
        try:
            while not failed and (chunk := os.read(fd, CHUNK)):
                chunks.put(chunk)
                to_compress.put(chunk)
        finally:
            chunks.put(None)
            to_compress.put(None)
            tapper.join()
            compressor.join()
            if failed:
                proc.kill()
            rc = proc.wait()
            proc.stdout.close()
        if failed:
            raise failed[0]
        errors.seek(0)
        text = errors.read().decode(errors="replace").strip()
    if rc == 1:  # "file changed as we read it": stored as read, say so
        stats.warnings += [f"tar: {line}" for line in text.splitlines()]
    elif rc != 0 or not tap.ended:
        raise TamerError(
            f"reading the volume folder {root} with tar failed: {text[-500:] or 'no end of archive'}; "
            "expected a readable folder (run as root on the engine's host)"
        )


def write_archive(
    root: str, out: IO[bytes], header: dict[str, Any], *, writer: str = "auto", zstd_threads: int = 1
) -> tuple[WriteStats, str, int]:
    """Write the folder `root` as a compressed archive to `out`.

    writer: "auto" (GNU tar when installed, else pure Python), "tar" or
    "python". zstd_threads: libzstd workers for the Python writer (with tar,
    compression already runs on a thread of its own).
    Returns (stats, sha256 of the compressed bytes, compressed size). A file
    that changes size while being read is stored as first seen (cut, or
    padded with zeros) and reported in stats.warnings; pause the users for a
    consistent copy.
    """
    tar = gnu_tar(writer)
    stats = WriteStats()
    hashed = _HashingWriter(out)
    # Python writer: threads=1, a libzstd worker compresses beside this thread reading and hashing files
    threads = zstd_threads if tar is None else 0
    cctx = zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=True, threads=threads)
    files: dict[str, Any] = {}
    xattrs: dict[str, dict[str, str]] = {}
    links: dict[tuple[int, int], bytes] = {}
    parts: list[bytes] = []
    pending = 0
    try:
        with cctx.stream_writer(hashed, closefd=False) as zw:  # type: ignore[arg-type]

            def flush() -> None:
                nonlocal parts, pending
                zw.write(b"".join(parts))
                parts = []
                pending = 0

            def add_bytes(name: str, payload: bytes) -> None:
                parts.append(_header(name.encode(), 0o600, 0, 0, len(payload), 0, _TYPE_REG))
                parts.append(payload + bytes(-len(payload) % BLOCK))

            add_bytes(HEADER_NAME, json.dumps({**header, "format": FORMAT}, sort_keys=True).encode())
            if tar is not None:
                flush()
                _forward_tar(tar, root, zw.write, stats, files, xattrs)
            else:
                st = os.stat(root)
                parts.append(
                    _header(
                        DATA.encode(),
                        stat.S_IMODE(st.st_mode),
                        st.st_uid,
                        st.st_gid,
                        0,
                        int(st.st_mtime),
                        _TYPE_DIR,
                    )
                )
                root_x = _xattrs(root)
                if root_x:
                    xattrs[""] = root_x
                prefix = DATA.encode() + b"/"

                def emit_batch(
                    batch: list[_Entry], reads: Future[list[tuple[bytes, int, str, dict[str, str]]]]
                ) -> None:
                    nonlocal pending
                    results = iter(reads.result())
                    for e in batch:
                        data, real, digest, x = next(results)
                        if x:
                            xattrs[e.rel] = x
                        if e.typeflag != _TYPE_REG or e.link is not None:
                            parts.append(
                                _header(
                                    e.name,
                                    e.perm,
                                    e.uid,
                                    e.gid,
                                    0,
                                    e.mtime,
                                    _TYPE_LNK if e.link is not None else e.typeflag,
                                    e.link or e.target,
                                )
                            )
                            pending += BLOCK
                            continue
                        size = e.size
                        if size > STREAM_AT:
                            flush()
                            digest, real = _stream_file(e, zw.write)
                            files[e.rel] = [size, digest]
                            stats.files += 1
                            stats.bytes += size
                            if real < size:
                                stats.warnings.append(
                                    f"{e.rel}: shrank while being read; stored {real} of {size} "
                                    "bytes padded with zeros (pause its users for a consistent "
                                    "copy)"
                                )
                            continue
                        if real < size:
                            stats.warnings.append(
                                f"{e.rel}: shrank while being read; stored {real} of {size} bytes "
                                "padded with zeros (pause its users for a consistent copy)"
                            )
                        parts.append(_header(e.name, e.perm, e.uid, e.gid, size, e.mtime, _TYPE_REG))
                        parts.append(data)
                        if size % BLOCK:
                            parts.append(_ZERO_BLOCK[: BLOCK - size % BLOCK])
                        files[e.rel] = [size, digest]
                        stats.files += 1
                        stats.bytes += size
                        pending += size + BLOCK
                    if pending >= FLUSH_AT:
                        flush()

                # Reading and hashing files runs on a few threads (both release the GIL), in batches, in order;
                # this thread builds headers and feeds the compressor, whose own worker compresses.
                inflight: deque[tuple[list[_Entry], Future[list[tuple[bytes, int, str, dict[str, str]]]]]] = (
                    deque()
                )
                with ThreadPoolExecutor(max_workers=READ_THREADS) as pool:
                    batch: list[_Entry] = []
                    for rel, path, st in _scan(root):
                        mode = st.st_mode
                        e = _Entry(
                            rel,
                            path,
                            prefix + os.fsencode(rel),
                            stat.S_IMODE(mode),
                            st.st_uid,
                            st.st_gid,
                            int(st.st_mtime),
                            0,
                            _TYPE_REG,
                        )
                        if stat.S_ISREG(mode):
                            key = (st.st_dev, st.st_ino)
                            if st.st_nlink > 1 and key in links:
                                e.link = links[key]
                            else:
                                if st.st_nlink > 1:
                                    links[key] = e.name
                                e.size = st.st_size
                        elif stat.S_ISDIR(mode):
                            e.typeflag = _TYPE_DIR
                        elif stat.S_ISLNK(mode):
                            e.typeflag = _TYPE_SYM
                            e.target = os.fsencode(os.readlink(path))
                        elif stat.S_ISFIFO(mode):
                            e.typeflag = _TYPE_FIFO
                        else:
                            stats.warnings.append(
                                f"{rel}: skipped (a socket or device node is not volume data)"
                            )
                            continue
                        stats.entries += 1
                        batch.append(e)
                        if len(batch) >= BATCH:
                            inflight.append((batch, pool.submit(_read_batch, batch)))
                            batch = []
                            if len(inflight) > READ_AHEAD:
                                emit_batch(*inflight.popleft())
                    if batch:
                        inflight.append((batch, pool.submit(_read_batch, batch)))
                    while inflight:
                        emit_batch(*inflight.popleft())
            manifest = {
                "format": FORMAT,
                "files": files,
                "xattrs": xattrs,
                "entries": stats.entries,
                "bytes": stats.bytes,
            }
            add_bytes(MANIFEST_NAME, json.dumps(manifest, separators=(",", ":")).encode())
            parts.append(bytes(2 * BLOCK))
            flush()
    finally:
        hashed.close()
    return stats, hashed.sha.hexdigest(), hashed.size
