"""Writing the backup archive (format in archive.py): compiled, GNU tar through a tap, or pure Python.

The compiled writer (tamer._cpack through archive_pack.py, the usual case for BLAKE3 archives) reads,
hashes and packs the files in this process and gives the pure-Python writer's stream byte for byte.
With GNU tar, tar reads the folder in a process of its own
and its stream passes through unchanged while the tap hashes every file and
collects xattrs for the manifest; libzstd's workers compress and the
archive's own sha256 runs on a thread of its own, so the stages overlap as in
`tar | zstd`. Without GNU tar (or with writer="python") a pure Python
writer reads files on a small thread pool and writes the same format.
The GNU tar half (finding tar, running it, _TarTap) is in archive_tar.py.

Sizes of any magnitude: a file of 8 GiB or more does not fit the ustar size
field, so both writers put its size in a PAX record (GNU tar does so itself)
and the tap reads it from there. Large files are streamed, never held whole
in memory.
"""

from __future__ import annotations

import base64
import errno
import hashlib
import json
import os
import queue
import stat
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import IO, Any

import zstandard

from tamer.nogc import without_cyclic_gc
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
    Digest,
    _header,
    default_digest,
    new_digest,
)
from tamer.volumes.archive_pack import pack_into, packer_module
from tamer.volumes.archive_tar import WRITERS as WRITERS
from tamer.volumes.archive_tar import _find_gnu_tar as _find_gnu_tar
from tamer.volumes.archive_tar import _forward_tar as _forward_tar
from tamer.volumes.archive_tar import _TarTap as _TarTap
from tamer.volumes.archive_tar import gnu_tar as gnu_tar

# Writes to the compressor are batched: one call per ~1 MiB instead of one per header.
FLUSH_AT = 1 << 20
ZSTD_LEVEL = 3  # zstd's own default, as `zstd` on the command line
# Compressed output is handed on (to the file and the archive's sha256) in pieces up to this size:
# zstd's own default (128 KiB) meant more hand-offs to the hashing thread, and more CPU.
OUT_CHUNK = 1 << 20
# With tar, libzstd's own workers compress (the level stays 3): measured on 2 cores against a Python
# thread driving single-threaded zstd, 10% less CPU (no GIL between compression and the tap) and
# room to use the second core when tar and the tap leave it idle. Two, not more: a backup should
# not take every core from the containers of the host it runs on.
TAR_ZSTD_THREADS = 2
# The input libzstd's workers take per job: 4 MiB, not libzstd's default for level 3 (8 MiB, 4x its 2 MiB
# window). Each worker holds a job's input and output, so peak RSS of a backup drops by ~26 MB; measured on
# 1.1 GB of tar streams, CPU the same or lower (the job just copied in is still in cache) and the archive
# 0.3% larger on real files (site-packages: 142.41 MB against 142.01; 2 MiB jobs: 143.24; one thread: 141.45).
ZSTD_JOB_SIZE = 4 << 20
# Files above this size are streamed by the writing thread in chunks instead of read whole by the pool.
STREAM_AT = 8 << 20


@dataclass
class WriteStats:
    files: int = 0
    entries: int = 0
    bytes: int = 0
    warnings: list[str] = field(default_factory=list)


class _HashingWriter:
    """A file-like sink that counts what passes through to `raw`, and hashes and writes it on a thread of
    its own.

    Hashing the compressed output on the compressing thread would put a second full pass in series with
    compression, and writing it there a copy into the file (on 2 cores the thread that feeds the
    compressor is the backup's critical path); hashlib and the write release the GIL, so a thread lets
    both overlap. An error writing (a full disk, a file past ulimit -f) is raised on the caller's thread,
    as the same OSError, at its next write, flush or close; nothing is written after it. Call close()
    before reading `sha`: it waits for every write.
    """

    def __init__(self, raw: IO[bytes]) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.size = 0
        self._error: BaseException | None = None
        self._reported = False
        self._queue: queue.Queue[bytes | None] = queue.Queue(maxsize=32)
        self._thread = threading.Thread(target=self._run, name="tamer-archive-out", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while (item := self._queue.get()) is not None:
            try:
                if self._error is None:
                    self.raw.write(item)
                    self.sha.update(item)
            except BaseException as exc:  # handed to the caller's thread
                self._error = exc
            finally:
                self._queue.task_done()
        self._queue.task_done()

    def _raise_error(self) -> None:
        error = self._error
        if error is not None and not self._reported:
            self._reported = True
            raise error

    def write(self, data: bytes | bytearray | memoryview) -> int:
        self._raise_error()
        chunk = bytes(data)
        self._queue.put(chunk)
        self.size += len(chunk)
        return len(chunk)

    def flush(self) -> None:
        if self._thread.is_alive():
            self._queue.join()  # every write so far done
        self._raise_error()
        self.raw.flush()

    def close(self, *, quiet: bool = False) -> None:
        """Wait for every write; raise the first error writing unless `quiet` (another error is in flight)."""
        if self._thread.is_alive():
            self._queue.put(None)
            self._thread.join()
        if not quiet:
            self._raise_error()


class _Dir:
    """An open folder of the tree being written. Entries name their files through it
    (/proc/self/fd/N/NAME): only the last component is ever resolved by name, with no symlink followed,
    so a folder swapped for a link to /etc by a running container mid-backup cannot pull host files into
    the archive, and paths past PATH_MAX (4096 bytes) work. Closed when the last entry naming it is done."""

    __slots__ = ("fd", "prefix")

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self.prefix = f"/proc/self/fd/{fd}/"

    def __del__(self) -> None:
        os.close(self.fd)


_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC


def _scan(root: str, skipped: list[str]) -> Iterator[tuple[str, str, os.stat_result, _Dir]]:
    """(relative path, path through its open parent folder, lstat, that folder) for every entry below root,
    folders before their contents. A folder that is gone or no longer a folder when its turn comes (a
    running user removed or replaced it) is left out and named in `skipped`."""
    stack: list[tuple[str, _Dir | None, str]] = [("", None, root)]
    while stack:
        rel_dir, parent, name = stack.pop()
        if parent is None:
            # the volume's own folder, as the engine names it (a link there is the essay's placement)
            here = _Dir(os.open(root, _DIR_FLAGS & ~os.O_NOFOLLOW))
        else:
            try:
                here = _Dir(os.open(name, _DIR_FLAGS, dir_fd=parent.fd))
            except OSError as exc:
                if exc.errno not in (errno.ENOENT, errno.ENOTDIR, errno.ELOOP):
                    raise
                skipped.append(
                    f"{rel_dir}: left out: removed or replaced while being read ({exc.strerror}); pause its "
                    "users for a consistent copy"
                )
                continue
        with os.scandir(here.fd) as it:
            # by the names' bytes, as the compiled writer (tamer._cpack) sorts them: str order differs for
            # names that are not UTF-8
            entries = sorted(it, key=lambda e: os.fsencode(e.name))
        subdirs = []
        for entry in entries:
            rel = f"{rel_dir}/{entry.name}" if rel_dir else entry.name
            try:
                st = entry.stat(follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed since the folder was listed
            yield rel, here.prefix + entry.name, st, here
            if stat.S_ISDIR(st.st_mode):
                subdirs.append((rel, here, entry.name))
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


def _open_listed(path: str) -> int | None:
    """The regular file listed at `path`, opened without following a link; None when a running user
    removed it or put a link, a folder, a device node or a FIFO in its place since (read as shrunk to
    nothing).

    Opening is itself an action on what stands at the name: a container with CAP_MKNOD can make a device
    node in its volume (/dev/watchdog's numbers arm the host's watchdog when opened, a tape device rewinds)
    and swap it in after the listing's stat. So the name is taken with O_PATH, which opens nothing, and
    only when fstat of that descriptor says regular is the same inode opened for reading, through
    /proc/self/fd (as the compiled writer does, _cpack_tree.c)."""
    try:
        held = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        if not stat.S_ISREG(os.fstat(held).st_mode):
            return None
        try:
            return os.open(f"/proc/self/fd/{held}", os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:  # EACCES as a non-root user: said of the file, not of its descriptor
            raise OSError(exc.errno, exc.strerror, path) from None
    finally:
        os.close(held)


def _read_file(path: str, size: int) -> tuple[bytes, int]:
    """The first `size` bytes of a file (padded with zeros if it shrank, or was removed or replaced by a
    link since it was listed) and how many were really there."""
    fd = _open_listed(path)
    if fd is None:
        return bytes(size), 0
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


def _stream_file(e: _Entry, write: Callable[[bytes], Any], digest: str) -> tuple[str, int]:
    """Write one large file's header and its `e.size` bytes (padded with zeros if it shrank) in chunks.

    Returns (digest of what was stored, bytes really read). Runs of zeros in
    sparse files are read as zeros, not skipped: the stream is a plain tar
    any tool can extract; restore writes them back as holes.
    """
    write(_header(e.name, e.perm, e.uid, e.gid, e.size, e.mtime, _TYPE_REG))
    sha: Digest = new_digest(digest)
    real = 0
    fd = _open_listed(e.path)
    try:
        while fd is not None and real < e.size:
            chunk = os.read(fd, min(CHUNK << 3, e.size - real))
            if not chunk:
                break
            sha.update(chunk)
            write(chunk)
            real += len(chunk)
    finally:
        if fd is not None:
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
    path: str  # through its open parent folder, which `folder` keeps open
    name: bytes
    perm: int
    uid: int
    gid: int
    mtime: int
    size: int
    typeflag: bytes
    link: bytes | None = None  # hard link to this earlier name
    target: bytes = b""  # symlink target
    folder: _Dir | None = None


def _read_batch(batch: list[_Entry], digest: str) -> list[tuple[bytes, int, str, dict[str, str]]]:
    """(data, bytes really read, digest, xattrs) for each entry; data only for small regular files
    (large ones are streamed when written)."""
    out = []
    for e in batch:
        x = _xattrs(e.path)
        if e.typeflag == _TYPE_REG and e.link is None and e.size <= STREAM_AT:
            data, real = _read_file(e.path, e.size)
            h = new_digest(digest)
            h.update(data)
            out.append((data, real, h.hexdigest(), x))
        else:
            out.append((b"", 0, "", x))
    return out


@without_cyclic_gc
def write_archive(
    root: str,
    out: IO[bytes],
    header: dict[str, Any],
    *,
    writer: str = "auto",
    zstd_threads: int = 1,
    digest: str | None = None,
) -> tuple[WriteStats, str, int]:
    """Write the folder `root` as a compressed archive to `out`.

    writer: "auto" (the compiled writer, tamer._cpack, for a BLAKE3 archive
    when it was built with its own BLAKE3 and TAMER_PURE_PACK is not set; else
    GNU tar when installed; else pure Python), "compiled", "tar" or "python".
    zstd_threads: libzstd workers for the Python writer (with tar or the
    compiled writer, TAR_ZSTD_THREADS). digest: the files'
    checksums, "blake3" (the default when installed) or "sha256" (the format-1
    archives of earlier tamers, written exactly as they were).
    Returns (stats, sha256 of the compressed bytes, compressed size). A file
    that changes size while being read is stored as first seen (cut, or
    padded with zeros) and reported in stats.warnings; pause the users for a
    consistent copy.
    """
    digest = digest or default_digest()
    new_digest(digest)  # an unknown digest is refused before anything is written
    pack = packer_module(writer, digest)  # the compiled writer, first choice of auto for BLAKE3 archives
    tar = None if pack is not None else gnu_tar(writer)
    stats = WriteStats()
    hashed = _HashingWriter(out)
    # Python writer: threads=1, a libzstd worker compresses beside this thread reading and hashing files
    threads = zstd_threads if tar is None and pack is None else TAR_ZSTD_THREADS
    params = zstandard.ZstdCompressionParameters.from_level(
        ZSTD_LEVEL, threads=threads, job_size=ZSTD_JOB_SIZE if threads else 0, write_checksum=True
    )
    cctx = zstandard.ZstdCompressor(compression_params=params)
    files: dict[str, Any] = {}
    xattrs: dict[str, dict[str, str]] = {}
    links: dict[tuple[int, int], bytes] = {}
    parts: list[bytes] = []
    pending = 0
    try:
        with cctx.stream_writer(hashed, closefd=False, write_size=OUT_CHUNK) as zw:  # type: ignore[arg-type]

            def flush() -> None:
                nonlocal parts, pending
                zw.write(b"".join(parts))
                parts = []
                pending = 0

            def add_bytes(name: str, payload: bytes) -> None:
                parts.append(_header(name.encode(), 0o600, 0, 0, len(payload), 0, _TYPE_REG))
                parts.append(payload + bytes(-len(payload) % BLOCK))

            # sha256 archives are format 1 exactly as earlier tamers wrote them; format 2 names its digest
            named = {"format": 1} if digest == "sha256" else {"format": FORMAT, "digest": digest}
            add_bytes(HEADER_NAME, json.dumps({**header, **named}, sort_keys=True).encode())
            if pack is not None:
                flush()
                pack_into(pack, root, zw.write, stats, files, xattrs)
            elif tar is not None:
                flush()
                _forward_tar(tar, root, zw.write, stats, files, xattrs, digest)
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
                        data, real, checksum, x = next(results)
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
                            checksum, real = _stream_file(e, zw.write, digest)
                            files[e.rel] = [size, checksum]
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
                        files[e.rel] = [size, checksum]
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
                    for rel, path, st, folder in _scan(root, stats.warnings):
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
                            folder=folder,
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
                            try:
                                e.target = os.fsencode(os.readlink(path))
                            except FileNotFoundError:
                                continue  # removed since the folder was listed
                            except OSError as exc:
                                if exc.errno != errno.EINVAL:
                                    raise
                                stats.warnings.append(  # no longer a link: replaced since it was listed
                                    f"{rel}: left out: removed or replaced while being read ({exc.strerror}); "
                                    "pause its users for a consistent copy"
                                )
                                continue
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
                            inflight.append((batch, pool.submit(_read_batch, batch, digest)))
                            batch = []
                            if len(inflight) > READ_AHEAD:
                                emit_batch(*inflight.popleft())
                    if batch:
                        inflight.append((batch, pool.submit(_read_batch, batch, digest)))
                    while inflight:
                        emit_batch(*inflight.popleft())
            manifest = {
                **named,
                "files": files,
                "xattrs": xattrs,
                "entries": stats.entries,
                "bytes": stats.bytes,
            }
            add_bytes(MANIFEST_NAME, json.dumps(manifest, separators=(",", ":")).encode())
            parts.append(bytes(2 * BLOCK))
            flush()
    except BaseException:
        # the error in flight is the one to say (a write error raised it, or came after it)
        hashed.close(quiet=True)
        raise
    hashed.close()
    return stats, hashed.sha.hexdigest(), hashed.size
