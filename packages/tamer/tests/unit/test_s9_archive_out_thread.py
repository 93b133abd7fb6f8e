"""The backup's output sink (archive_write._HashingWriter) writes and hashes on a thread of its own; what the
caller sees must be as if it wrote itself: every byte in order, the archive's sha256 of exactly those bytes,
and an error writing (a full disk) raised on the caller's thread as the same OSError, nothing written after."""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path

import pytest
from tamer.volumes import archive_write


class _FullAfter(io.RawIOBase):
    """A file whose disk fills after `room` bytes (ENOSPC, as os.write says it)."""

    def __init__(self, room: int) -> None:
        self.room = room
        self.got = bytearray()
        self.calls_after_error = 0
        self.failed = False

    def writable(self) -> bool:
        return True

    def write(self, data: object) -> int:
        chunk = bytes(data)  # type: ignore[call-overload]
        if self.failed:
            self.calls_after_error += 1
        if len(self.got) + len(chunk) > self.room:
            self.failed = True
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.got += chunk
        return len(chunk)


def test_every_byte_arrives_in_order_and_the_digest_is_of_them() -> None:
    raw = _FullAfter(1 << 30)
    sink = archive_write._HashingWriter(raw)  # type: ignore[arg-type]
    pieces = [os.urandom(n) for n in (1, 1000, 1 << 20, 7, 1 << 16)] * 20
    for p in pieces:
        assert sink.write(p) == len(p)
    sink.flush()
    assert bytes(raw.got) == b"".join(pieces)  # flush waited for every write
    sink.close()
    assert sink.size == len(raw.got)
    assert sink.sha.hexdigest() == hashlib.sha256(b"".join(pieces)).hexdigest()


def test_a_full_disk_is_raised_on_the_caller_s_thread_and_nothing_is_written_after() -> None:
    raw = _FullAfter(3 << 20)
    sink = archive_write._HashingWriter(raw)  # type: ignore[arg-type]
    with pytest.raises(OSError) as caught:
        for _ in range(100):
            sink.write(bytes(1 << 20))
        sink.close()
    assert caught.value.errno == errno.ENOSPC
    sink.close(quiet=True)
    assert raw.calls_after_error == 0
    assert len(raw.got) == 3 << 20


def test_write_archive_says_a_full_disk_as_the_oserror_and_leaves_the_error_in_flight_alone(
    tmp_path: Path,
) -> None:
    root = tmp_path / "vol"
    root.mkdir()
    for k in range(40):
        (root / f"f{k}").write_bytes(os.urandom(200_000))  # incompressible: ~8 MB of archive
    with pytest.raises(OSError) as caught:
        archive_write.write_archive(str(root), _FullAfter(1 << 20), {"volume": "v"}, writer="python")  # type: ignore[arg-type]
    assert caught.value.errno == errno.ENOSPC
