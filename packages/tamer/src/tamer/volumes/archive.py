"""The backup archive format: a tar stream (PAX) compressed with zstd, checksums in a manifest.

Layout, in order:
    tamer-backup.json     header: format, volume name, when, where the data lived
    data                  the volume's root folder (its mode, owner, times)
    data/...              every entry below it (regular files, folders, symlinks, hard links, fifos)
    tamer-manifest.json   digest and size of every regular file, xattrs of every entry, counts

Digests: archives written by this tamer use BLAKE3 (format 2, the header
says `"digest": "blake3"`): hashing every file in C at several GB/s keeps
the backup near `tar | zstd`. Archives written before (format 1, no
`digest` key) use sha256 and stay readable. The header is the first entry,
so a reader knows the digest before it reads any file; the manifest must
name the same one.

The manifest comes last so a backup reads each file once; a truncated archive
therefore lacks it and is refused. The reader reads past zero blocks (as
`tar --ignore-zeros` does), because a stream written by GNU tar keeps tar's
own end-of-archive marker before the manifest. Times are whole seconds (as
GNU tar's default format); owners are numeric ids; xattrs are in the manifest
(base64), which restore uses, whatever PAX records also carry them. Sparse
files are stored in full (zeros compress to almost nothing) and written back
sparse. Sizes of 8 GiB and more (past the ustar field's 11 octal digits) are
PAX `size` records, written by both writers and read by the reader and the
writer's tap. Any tar can list or extract the data part.

archive_write.write_archive and read_archive here are the two halves;
backup.py puts them to use.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import os
import queue
import tarfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import IO, Any, Protocol

import zstandard

from tamer.compiled import load
from tamer.errors import BackupCorrupt
from tamer.nogc import without_cyclic_gc

FORMAT = 2  # 1: sha256 digests, the header names none; 2: the header names its digest
HEADER_NAME = "tamer-backup.json"
MANIFEST_NAME = "tamer-manifest.json"
DATA = "data"
CHUNK = 1 << 20
BLOCK = tarfile.BLOCKSIZE


_ZERO_BLOCK = bytes(BLOCK)
DIGESTS = ("blake3", "sha256")


class Digest(Protocol):
    """hashlib's interface, which blake3's objects share."""

    def update(self, data: Any, /) -> object: ...

    def hexdigest(self) -> str: ...


def default_digest() -> str:
    """The digest new archives use: BLAKE3 when the blake3 package is installed (a dependency of tamer),
    else sha256 (an archive is never refused for it: format 1 stays readable)."""
    try:
        import blake3  # noqa: F401
    except ImportError:
        return "sha256"
    return "blake3"


def digest_factory(name: str) -> Callable[[], Digest]:
    """What makes a new hash object for the digest `name` (one of DIGESTS): called once per file."""
    if name == "sha256":
        return hashlib.sha256
    if name == "blake3":
        try:
            import blake3
        except ImportError:
            raise BackupCorrupt(
                "this archive's checksums are BLAKE3, but the blake3 package is not installed; expected "
                "tamer's dependencies installed; `pip install blake3`, then run this again"
            ) from None
        return blake3.blake3
    raise ValueError(f"digest {name!r} is not one of {', '.join(DIGESTS)}")


def new_digest(name: str) -> Digest:
    """A new hash object for the digest `name` (one of DIGESTS)."""
    return digest_factory(name)()


def header_digest(header: Any, path: str) -> str:
    """The digest an archive's header names (sha256 for a format-1 archive); BackupCorrupt for anything else."""
    fmt = header.get("format", 1) if isinstance(header, dict) else None
    if fmt not in (1, FORMAT) or isinstance(fmt, bool):
        raise BackupCorrupt(
            f"{path}: archive format {fmt!r} is not one this tamer reads (1 or {FORMAT}); expected a "
            "backup written by `tamer volume backup`; a newer tamer may read it"
        )
    name = header.get("digest", "sha256") if fmt == FORMAT else "sha256"
    if name not in DIGESTS:
        raise BackupCorrupt(
            f"{path}: its header names the digest {name!r}; expected one of {', '.join(DIGESTS)}; "
            "this archive was altered or not written by tamer"
        )
    return str(name)


_TYPE_REG, _TYPE_LNK, _TYPE_SYM, _TYPE_DIR, _TYPE_FIFO = b"0", b"1", b"2", b"5", b"6"
_OCTAL7, _OCTAL11 = 0o7777777, 0o77777777777
_USTAR_TAIL = b"ustar\x0000" + bytes(BLOCK - 265)
_CHK_CONST = 8 * 32 + sum(_USTAR_TAIL)


def _header(
    name: bytes, mode: int, uid: int, gid: int, size: int, mtime: int, typeflag: bytes, linkname: bytes = b""
) -> bytes:
    """One tar header: plain ustar when everything fits (nearly always), else tarfile's PAX form.

    Written by hand because tarfile's general path costs more per entry than
    reading a small file does; the format is the same.
    """
    if (
        len(name) > 100
        or len(linkname) > 100
        or not (0 <= uid < _OCTAL7 and 0 <= gid < _OCTAL7 and 0 <= size < _OCTAL11 and 0 <= mtime < _OCTAL11)
    ):
        info = tarfile.TarInfo(os.fsdecode(name))
        info.mode, info.uid, info.gid, info.size, info.mtime = mode, uid, gid, size, mtime
        info.type, info.linkname = typeflag, os.fsdecode(linkname)
        info.uname = info.gname = ""
        return info.tobuf(tarfile.PAX_FORMAT, "utf-8", "surrogateescape")
    nums = b"%07o\0%07o\0%07o\0%011o\0%011o\0" % (mode, uid, gid, size, mtime)
    # checksum: every byte of the header, the checksum field counted as eight spaces
    chk = _CHK_CONST + sum(name) + sum(nums) + typeflag[0] + sum(linkname)
    return b"".join(
        (
            name,
            bytes(100 - len(name)),
            nums,
            b"%06o\0 " % chk,
            typeflag,
            linkname,
            bytes(100 - len(linkname)),
            _USTAR_TAIL,
        )
    )


# -- reading --------------------------------------------------------------------
class _Prefetch:
    """The decompressed tar stream, decompressed on a thread of its own ahead of the reader (zstd releases
    the GIL), so decompression overlaps with checking and writing files. Errors surface on the reading side.

    Chunks are kept as they come, not copied into a second buffer: peek() shows the rest of the current
    chunk (the compiled restore reads whole members straight from it) and skip() moves past what was taken.
    """

    def __init__(self, source: Any) -> None:
        self._queue: queue.Queue[bytes | BaseException | None] = queue.Queue(maxsize=16)
        self._buf = b""
        self._pos = 0
        self._done = False
        self._stop = False
        self._thread = threading.Thread(
            target=self._run, args=(source,), name="tamer-restore-zstd", daemon=True
        )
        self._thread.start()

    def _run(self, source: Any) -> None:
        try:
            while not self._stop and (chunk := source.read(CHUNK)):
                self._queue.put(chunk)
            self._queue.put(None)
        except BaseException as exc:  # handed to the reader
            self._queue.put(exc)

    def _next(self) -> bool:
        """Make the next chunk current; False at the end of the stream."""
        if self._done:
            return False
        item = self._queue.get()
        if item is None:
            self._done = True
            return False
        if isinstance(item, BaseException):
            self._done = True
            raise item
        self._buf, self._pos = item, 0
        return True

    def read(self, n: int) -> bytes:
        """n bytes, fewer only at the end of the stream."""
        pos = self._pos
        if pos + n <= len(self._buf):
            self._pos = pos + n
            return self._buf if pos == 0 and n == len(self._buf) else self._buf[pos : pos + n]
        parts = [self._buf[pos:]]
        need = n - len(parts[0])
        self._buf, self._pos = b"", 0
        while need > 0 and self._next():
            take = min(need, len(self._buf))
            parts.append(self._buf[:take] if take < len(self._buf) else self._buf)
            self._pos = take
            need -= take
        return b"".join(parts)

    def peek(self) -> tuple[bytes, int]:
        """The current chunk and where the stream stands in it (a new chunk when this one is used up)."""
        if self._pos >= len(self._buf):
            self._next()
        return self._buf, self._pos

    def skip(self, n: int) -> None:
        """Move past n bytes of what peek() showed."""
        self._pos += n

    def close(self) -> None:
        self._stop = True
        while self._thread.is_alive():  # unblock a producer waiting on a full queue
            with contextlib.suppress(queue.Empty):
                self._queue.get(timeout=0.05)


class _HashingReader(io.RawIOBase):
    def __init__(self, raw: IO[bytes], enabled: bool) -> None:
        self.raw = raw
        self.sha = hashlib.sha256()
        self.enabled = enabled
        self.size = 0

    def readable(self) -> bool:
        return True

    def readinto(self, b: Any) -> int:
        n = self.raw.readinto(b)  # type: ignore[attr-defined]
        if n:
            if self.enabled:
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


class FileOut(Protocol):
    """Where the bytes of one regular file go while it is read (restore writes them; verify drops them)."""

    def write(self, chunk: bytes) -> None: ...

    def close(self) -> None: ...


FileSink = Callable[[tarfile.TarInfo], "FileOut | None"]
EntrySink = Callable[[tarfile.TarInfo], None]
PlainDone = list[tuple[str, int, str]]
# (buffer, position, digest factory or None for BLAKE3 in C) -> (bytes taken, [(path below data/, size,
# hexdigest)]): see read_archive
PlainSink = Callable[[bytes, int, "Callable[..., Digest] | None"], tuple[int, PlainDone]]


def compiled_restore() -> Callable[..., tuple[int, int, PlainDone]] | None:
    """tamer._crestore.extract when it was built and TAMER_PURE_RESTORE is not set, else None (the Python
    path, which is the reference: the compiled one takes only the plain files it would take the same way)."""
    native = load("tamer._crestore", "TAMER_PURE_RESTORE")  # the switch's rule: tamer.compiled
    if native is None:  # built without a C compiler: the Python path gives the same results
        return None
    extract: Callable[..., tuple[int, int, PlainDone]] = native.extract
    return extract


def _hash_plain(extract: Callable[..., tuple[int, int, PlainDone]]) -> PlainSink:
    """The compiled path for a read that only checks (verify): plain files hashed, nothing written."""

    def take(buf: bytes, pos: int, factory: Callable[..., Digest] | None) -> tuple[int, PlainDone]:
        consumed, _used, done = extract(buf, pos, -1, b"", {}, 0, 0, 0, factory)
        return consumed, done

    return take


def _num(field: bytes) -> int:
    if field[-1:] in (b"\0", b" "):  # the usual form, octal digits then a NUL or a space: one call
        try:
            return int(field[:-1], 8)
        except ValueError:
            pass  # padded with NULs, base-256, empty...: the general path below
    if field and field[0] & 0x80:  # base-256, as GNU tar writes large values
        return int.from_bytes(field[1:], "big")
    text = field.split(b"\0", 1)[0].strip()
    return int(text, 8) if text else 0


def _cstr(field: bytes) -> bytes:
    return field.split(b"\0", 1)[0]


def _pax_records(data: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    pos = 0
    while pos < len(data):
        space = data.index(b" ", pos)
        length = int(data[pos:space])
        if length <= space - pos:
            raise ValueError(f"a PAX record of length {length}")
        key, _, value = data[space + 1 : pos + length - 1].partition(b"=")
        out[key.decode("utf-8", "surrogateescape")] = value.decode("utf-8", "surrogateescape")
        pos += length
    return out


class _Corrupt(Exception):
    pass


def _members(stream: Any, plain: Callable[[], None] | None = None) -> Iterator[tarfile.TarInfo]:
    """Headers of a tar stream (ustar, PAX, GNU long names); the caller reads each member's data.

    plain() is called at each header boundary where no PAX or GNU long-name record is pending: it may
    take plain files off the stream itself (the compiled restore) before the next header is read here."""
    pax: dict[str, str] = {}
    long_name: bytes | None = None
    long_link: bytes | None = None
    while True:
        if plain is not None and not pax and long_name is None and long_link is None:
            plain()
        h = stream.read(BLOCK)
        if not h:
            return  # the end; whether the manifest came is the caller's check
        if len(h) < BLOCK:
            raise _Corrupt("the archive ends in the middle of an entry header")
        if h == _ZERO_BLOCK:
            continue  # an end-of-archive marker (tar's, inside the stream) or padding: read on
        if _num(h[148:156]) != sum(h[:148]) + 256 + sum(h[156:]):
            raise _Corrupt("an entry header fails its checksum")
        typeflag = h[156:157] or _TYPE_REG
        size = _num(h[124:136])
        if typeflag in (b"x", b"g", b"L", b"K"):
            payload = stream.read(size + (-size % BLOCK))[:size]
            if len(payload) < size:
                raise _Corrupt("the archive ends inside an extended header")
            if typeflag == b"x":
                pax = _pax_records(payload)
            elif typeflag == b"L":
                long_name = _cstr(payload)
            elif typeflag == b"K":
                long_link = _cstr(payload)
            continue
        name = _cstr(h[0:100])
        if h[257:262] == b"ustar":
            prefix = _cstr(h[345:500])
            if prefix:
                name = prefix + b"/" + name
        if long_name is not None:
            name = long_name
        link = long_link if long_link is not None else _cstr(h[157:257])
        if typeflag == b"S" or any(k.startswith("GNU.sparse.") for k in pax):
            raise _Corrupt(
                "a GNU sparse entry, a form tamer never writes (it stores files whole and restores "
                "zero runs as holes)"
            )
        m = tarfile.TarInfo(pax.get("path") or os.fsdecode(name))
        m.type = b"0" if typeflag == b"\0" else typeflag
        m.mode = _num(h[100:108]) & 0o7777
        m.uid = int(pax.get("uid") or _num(h[108:116]))
        m.gid = int(pax.get("gid") or _num(h[116:124]))
        # PAX size first: a file of 8 GiB or more does not fit the 11 octal digits of the ustar field
        m.size = int(pax.get("size") or size)
        m.mtime = int(float(pax.get("mtime") or _num(h[136:148])))
        m.linkname = pax.get("linkpath") or os.fsdecode(link)
        if min(m.size, m.uid, m.gid) < 0:
            raise _Corrupt(f"{m.name} declares a negative size or owner")
        if m.type == tarfile.DIRTYPE:
            m.name = m.name.rstrip("/")
        pax, long_name, long_link = {}, None, None
        yield m


@without_cyclic_gc
def read_archive(
    path: str,
    *,
    on_file: FileSink | None = None,
    on_entry: EntrySink | None = None,
    plain: PlainSink | None = None,
    hash_archive: bool = True,
) -> ReadResult:
    """Stream through the archive at `path`, checking every file's checksum against the manifest.

    on_entry(member) is called for each non-regular entry under data/ (the
    root folder included); on_file(member) for each regular file returns a
    FileOut that receives its bytes (or None to only check them). Raises
    BackupCorrupt naming the file that failed: damaged compressed data, a
    truncated archive, a checksum or size mismatch, a file missing from or
    extra to the manifest.

    plain(buffer, pos, digest_factory or None for BLAKE3 in C), when given, is offered the stream at
    each header boundary with no extended header pending and may take
    consecutive plain files off it (tamer._crestore, through
    restore._Extractor.plain): it returns the bytes it took and (path below
    data/, size, hexdigest) of each file, which are checked against the
    manifest like any other. With on_file=None (verify) the compiled hashing
    is used when built, unless TAMER_PURE_RESTORE is set.
    """
    seen: dict[str, tuple[int, str]] = {}
    algo = "sha256"  # the files' digest, as the header names it
    new_file_digest: Callable[[], Digest] = hashlib.sha256
    header: dict[str, Any] | None = None
    manifest: dict[str, Any] | None = None
    entries = 0
    current = "the start of the archive"
    try:
        raw = open(path, "rb")  # noqa: SIM115 - closed below
    except OSError as exc:
        raise BackupCorrupt(
            f"cannot read backup {path}: {exc.strerror}; expected a readable tamer backup file"
        ) from exc
    hashing = _HashingReader(raw, hash_archive)
    prefetch: _Prefetch | None = None
    prefix = DATA + "/"
    if plain is None and on_file is None and (native := compiled_restore()) is not None:
        plain = _hash_plain(native)

    def take_plain() -> None:
        nonlocal entries, current
        if header is None or manifest is not None or plain is None or prefetch is None:
            return  # the header first, nothing after the manifest: the Python path says so
        buf, pos = prefetch.peek()
        if len(buf) - pos < BLOCK:
            return
        # BLAKE3 archives: hashed in C (tamer._crestore's vendored BLAKE3, no GIL, beside the writes)
        consumed, done = plain(buf, pos, None if algo == "blake3" else new_file_digest)
        if done:
            prefetch.skip(consumed)
            for rel, size, digest in done:
                seen[rel] = (size, digest)
            entries += len(done)
            current = prefix + done[-1][0]

    try:
        reader = zstandard.ZstdDecompressor().stream_reader(io.BufferedReader(hashing, CHUNK))
        prefetch = _Prefetch(reader)
        stream = prefetch
        for member in _members(stream, take_plain if plain is not None else None):
            current = member.name
            if manifest is not None:
                raise BackupCorrupt(
                    f"{path}: entry {member.name} after the manifest; expected the manifest "
                    "last; this is not a backup tamer wrote"
                )
            padding = -member.size % BLOCK if member.isreg() else 0
            if member.name in (HEADER_NAME, MANIFEST_NAME):
                raw_meta = stream.read(member.size + padding)[: member.size]
                try:
                    meta = json.loads(raw_meta)
                except ValueError as exc:
                    raise BackupCorrupt(
                        f"{path}: {member.name} is not valid JSON; the archive is damaged or "
                        "truncated; restore from another copy"
                    ) from exc
                if member.name == HEADER_NAME:
                    if header is not None:
                        raise BackupCorrupt(
                            f"{path}: a second {HEADER_NAME}; expected one header, first; this archive was "
                            "altered or not written by tamer"
                        )
                    algo = header_digest(meta, path)
                    new_file_digest = digest_factory(algo)
                    header = meta
                else:
                    manifest = meta
                continue
            if header is None:
                raise BackupCorrupt(
                    f"{path}: starts with {member.name}, not {HEADER_NAME}; expected a backup "
                    "written by `tamer volume backup`"
                )
            if member.isreg():
                sink = on_file(member) if on_file is not None else None
                sha = new_file_digest()
                left = member.size
                try:
                    while left > 0:
                        chunk = stream.read(min(CHUNK << 3, left))
                        if not chunk:
                            raise BackupCorrupt(
                                f"{path}: {member.name} is truncated ({member.size - left} of "
                                f"{member.size} bytes); the archive was cut short; restore from "
                                "another copy"
                            )
                        sha.update(chunk)
                        if sink is not None:
                            sink.write(chunk)
                        left -= len(chunk)
                finally:
                    if sink is not None:
                        sink.close()
                if padding:
                    stream.read(padding)
                rel = member.name[len(prefix) :] if member.name.startswith(prefix) else member.name
                seen[rel] = (member.size, sha.hexdigest())
            else:
                if on_entry is not None:
                    on_entry(member)
                if member.size and not (member.islnk() or member.issym() or member.isdir()):
                    stream.read(member.size + (-member.size % BLOCK))
            entries += 1
        # read what follows the end-of-archive blocks, so the zstd frame checksum is checked too
        while stream.read(CHUNK):
            pass
    except BackupCorrupt:
        raise
    except zstandard.ZstdError as exc:
        raise BackupCorrupt(
            f"{path}: the compressed data is damaged while reading {current} ({exc}); expected an "
            "intact tamer backup; restore from another copy"
        ) from exc
    except (_Corrupt, ValueError, tarfile.TarError, EOFError) as exc:
        raise BackupCorrupt(
            f"{path}: the archive is truncated or damaged after {current} ({exc}); expected an "
            "intact tamer backup; restore from another copy"
        ) from exc
    finally:
        if prefetch is not None:
            prefetch.close()
        raw.close()
    if header is None:
        raise BackupCorrupt(f"{path}: no {HEADER_NAME}; expected a backup written by `tamer volume backup`")
    if manifest is None:
        raise BackupCorrupt(
            f"{path}: the archive ends after {current} without its manifest: it was truncated; "
            "restore from another copy"
        )
    if not isinstance(manifest, dict) or not isinstance(manifest.get("files") or {}, dict):
        raise BackupCorrupt(f"{path}: its manifest is not a mapping of files; the archive was altered")
    if manifest.get("digest", "sha256") != algo:
        raise BackupCorrupt(
            f"{path}: the manifest's digest {manifest.get('digest', 'sha256')!r} is not the header's "
            f"{algo!r}; the archive was altered"
        )
    expected: dict[str, list[Any]] = manifest.get("files") or {}
    for rel, (size, digest) in seen.items():
        want = expected.get(rel)
        if want is None:
            raise BackupCorrupt(f"{path}: data/{rel} is not in the manifest; the archive was altered")
        if int(want[0]) != size or str(want[1]) != digest:
            raise BackupCorrupt(
                f"{path}: data/{rel} failed its checksum (expected {algo} {want[1]}, "
                f"{want[0]} bytes; got {digest}, {size} bytes); the archive is damaged; "
                "restore from another copy"
            )
    missing = sorted(set(expected) - set(seen))
    if missing:
        raise BackupCorrupt(
            f"{path}: data/{missing[0]} (and {len(missing) - 1} more) listed in the manifest is "
            "missing from the archive; the archive was altered"
        )
    return ReadResult(
        header=header,
        manifest=manifest,
        files=len(seen),
        entries=entries - 1,
        bytes=sum(s for s, _ in seen.values()),
        sha256=hashing.sha.hexdigest() if hash_archive else "",
        archive_bytes=hashing.size,
    )
