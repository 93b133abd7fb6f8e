"""GNU tar as the backup archive's writer (format in archive.py): finding it, running it, tapping its stream.

Used by archive_write.write_archive: tar reads the folder in a process of its
own and its stream passes through unchanged to the compressor, while the tap
hashes every file and collects xattrs for the manifest: tamer._ctap.Tap (C)
when it was built, else _TarTap, the Python reference it must equal. A file of 8 GiB or
more has its size in a PAX record (GNU tar puts it there itself), which the
tap reads.
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import functools
import os
import re
import shutil
import subprocess
import tempfile
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from tamer.compiled import load
from tamer.errors import TamerError
from tamer.volumes.archive import (
    _ZERO_BLOCK,
    BLOCK,
    CHUNK,
    DATA,
    Digest,
    _cstr,
    _num,
    _pax_records,
    digest_factory,
)

if TYPE_CHECKING:
    from tamer.volumes.archive_write import WriteStats

WRITERS = ("auto", "compiled", "tar", "python")


def gnu_tar(writer: str = "auto") -> str | None:
    """GNU tar's path for `writer` ("auto": when installed; "tar": required; "python" and "compiled":
    never). "compiled" is refused here when tamer._cpack cannot write a default (BLAKE3) archive, so that a
    backup refuses it before anything is written; which writer `auto` takes is write_archive's choice
    (archive_pack.packer_module: the compiled one first)."""
    if writer not in WRITERS:
        raise TamerError(f"archive writer {writer!r} is unknown; expected one of {', '.join(WRITERS)}")
    if writer == "python":
        return None
    if writer == "compiled":
        from tamer.volumes.archive import default_digest
        from tamer.volumes.archive_pack import packer_module

        packer_module(writer, default_digest())
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


# GNU tar writes '%' and '=' in an xattr's name as %25 and %3D (a PAX keyword ends at its '='), and
# reads back exactly these two (xattrs.c, xattr_decode_keyword); nothing else is escaped.
_XATTR_ESCAPE = re.compile("%(3D|25)")


def _xattr_name(keyword: str) -> str:
    return _XATTR_ESCAPE.sub(lambda m: "=" if m.group(1) == "3D" else "%", keyword)


def _pax_xattrs(pax: dict[str, str]) -> dict[str, str]:
    """The xattrs that PAX records carry (`SCHILY.xattr.NAME`), their values base64, as the manifest keeps them."""
    return {
        _xattr_name(k[len("SCHILY.xattr.") :]): base64.b64encode(
            v.encode("utf-8", "surrogateescape")
        ).decode()
        for k, v in pax.items()
        if k.startswith("SCHILY.xattr.")
    }


class Tap(Protocol):
    """What _forward_tar needs of a tap: _TarTap, or tamer._ctap.Tap (the same in C)."""

    @property
    def ended(self) -> bool: ...

    def feed(self, chunk: bytes | memoryview, /) -> None: ...


def new_tap(
    stats: WriteStats,
    files: dict[str, Any],
    xattrs: dict[str, dict[str, str]],
    digest: str = "sha256",
    *,
    pure: bool | None = None,
) -> Tap:
    """The tap in C (tamer._ctap) when it was built, else _TarTap, the Python reference.

    pure: True forces _TarTap; False takes the C tap when built; None (the default) means "unless
    the TAMER_PURE_TAP switch forces pure Python" (tamer.compiled.pure_forced: set, and not "0").
    Both give the same manifest for the same stream (a test compares them on hostile trees).
    """
    native = None if pure else load("tamer._ctap", None if pure is False else "TAMER_PURE_TAP")
    if native is not None:
        # BLAKE3 in the tap itself (the vendored C BLAKE3): small files side by side in SIMD lanes, without
        # the GIL; digest_factory still runs, so that a missing blake3 package is refused as before
        tap: Tap = native.Tap(
            stats,
            files,
            xattrs,
            digest_factory(digest),
            _pax_records,
            _pax_xattrs,
            _num,
            DATA.encode(),
            native_blake3=digest == "blake3",
        )
        return tap
    return _TarTap(stats, files, xattrs, digest)


class _TarTap:
    """Watches a tar stream go by, chunk by chunk: hashes file contents, collects xattrs, counts.

    It never changes or copies the stream, so the chunks themselves go on to
    the compressor whole (one call per MiB, not three per file). tar's own
    end-of-archive zeros stay in the stream; the manifest follows them and
    the reader reads past zero blocks (as `tar --ignore-zeros` does).
    """

    def __init__(
        self,
        stats: WriteStats,
        files: dict[str, Any],
        xattrs: dict[str, dict[str, str]],
        digest: str = "sha256",
    ) -> None:
        self.stats, self.files, self.xattrs = stats, files, xattrs
        self._new_digest = digest_factory(digest)
        self.mode = "header"  # header, ext (an extended header's payload), data, skip
        self.need = BLOCK
        self.acc = bytearray()
        self.left = 0
        self.pad = 0
        self.ext_type = b""
        self.ext_size = 0
        self.pax: dict[str, str] = {}
        self.sha: Digest = self._new_digest()
        self.rel = ""
        self.size = 0
        self.ended = False

    def feed(self, chunk: bytes | memoryview) -> None:
        if not isinstance(chunk, bytes):
            chunk = bytes(chunk)  # the parsing below compares and converts slices as bytes
        mv = memoryview(chunk)
        i, n = 0, len(chunk)
        while i < n and not self.ended:
            if self.mode == "header" and not self.acc and n - i >= BLOCK:
                # nearly every entry: its header whole in this chunk, often its data too, hashed in one go
                # (the state machine below costs several passes per entry, and entries are many and small)
                block = chunk[i : i + BLOCK]
                i += BLOCK
                if block == _ZERO_BLOCK:
                    self.ended = True
                    break
                self._header(block)
                if self.mode == "data" and n - i >= self.left + self.pad:
                    end = i + self.left
                    self.sha.update(mv[i:end])
                    i = end + self.pad
                    self.left = self.pad = 0
                    self._file_done()
                continue
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
        pax = self.pax
        if pax and typeflag not in (b"x", b"g", b"L", b"K") and "size" in pax:
            size = int(pax["size"])  # 8 GiB and more: the ustar field cannot hold it (failure 5)
        if not 0 <= size < 1 << 64:  # tar never writes one; the C tap refuses it too
            raise ValueError(f"a tar entry of {size} bytes")
        if typeflag in (b"x", b"g", b"L", b"K"):
            self.ext_type, self.ext_size = typeflag, size
            self.mode, self.need = "ext", size + (-size % BLOCK)
            if not self.need:
                self._ext(b"")
            return
        name = pax.get("path") if pax else None
        if name is None:
            raw = _cstr(h[0:100])
            prefix = _cstr(h[345:500]) if h[257:262] == b"ustar" else b""
            name = os.fsdecode(prefix + b"/" + raw if prefix else raw)
        rel = name.rstrip("/").removeprefix(DATA).removeprefix("/")
        if pax:
            x = _pax_xattrs(pax)
            if x:
                self.xattrs[rel] = x
            self.pax = {}
        if rel:
            self.stats.entries += 1
        if typeflag in (b"3", b"4"):
            self.stats.warnings.append(f"{rel}: a device node; stored, but a restore skips it")
        if typeflag in (b"0", b"\0", b"7"):
            self.rel, self.size, self.sha = rel, size, self._new_digest()
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


def _fill() -> Callable[[int, bytearray], int]:
    """tamer._ctap.readinto_full when it was built (whole chunks: fewer hand-offs), else os.readv (whatever
    the pipe holds). Either fills one buffer, used again for every chunk."""
    native = load("tamer._ctap", None)  # not switched: it reads the same stream either way
    if native is None:
        return lambda fd, buf: os.readv(fd, [buf])
    readinto_full: Callable[[int, bytearray], int] = native.readinto_full
    return readinto_full


def _forward_tar(
    tar: str,
    root: str,
    write: Callable[[memoryview], Any],
    stats: WriteStats,
    files: dict[str, Any],
    xattrs: dict[str, dict[str, str]],
    digest: str = "sha256",
    *,
    pure_tap: bool | None = None,
) -> None:
    """Let GNU tar read the folder (a process of its own, like `tar | zstd`) and pass its stream on.

    The stream goes to `write` (the compressor) unchanged, in chunks that
    `write` must use or copy before it returns (the buffer is reused), while the tap
    (new_tap: C, or _TarTap) hashes file contents and collects xattrs for the
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
    tap = new_tap(stats, files, xattrs, digest, pure=pure_tap)
    with tempfile.TemporaryFile() as errors:
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=errors, bufsize=0)
        assert proc.stdout is not None
        with contextlib.suppress(OSError):  # let tar run up to 1 MiB ahead of us, not 64 KiB
            fcntl.fcntl(proc.stdout.fileno(), fcntl.F_SETPIPE_SZ, 1 << 20)
        fd = proc.stdout.fileno()
        # This thread reads tar's stream, hands each chunk to `write` (libzstd's own workers compress
        # it, without the GIL) and then taps it. A thread of our own for the tap, or for driving a
        # single-threaded compressor, measured more CPU, not less: hand-offs per chunk, and the GIL
        # passed back and forth between Python threads.
        fill = _fill()
        # one buffer for every chunk: the compressor copies what it is given and the tap keeps nothing,
        # and a fresh megabyte per chunk cost a page fault per 4 KiB
        buf = bytearray(CHUNK)
        view = memoryview(buf)
        done = False
        try:
            while n := fill(fd, buf):
                chunk = view[:n]
                write(chunk)  # first, so that compression starts while the tap hashes
                tap.feed(chunk)
            done = True
        finally:
            if not done:
                proc.kill()  # tar may be blocked on a full pipe that nobody reads any more
            rc = proc.wait()
            proc.stdout.close()
        errors.seek(0)
        text = errors.read().decode(errors="replace").strip()
    if rc == 1:  # "file changed as we read it": stored as read, say so
        stats.warnings += [f"tar: {line}" for line in text.splitlines()]
    elif rc != 0 or not tap.ended:
        raise TamerError(
            f"reading the volume folder {root} with tar failed: {text[-500:] or 'no end of archive'}; "
            "expected a readable folder (run as root on the engine's host)"
        )
