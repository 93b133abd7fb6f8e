"""The archive writers (the compiled one, tamer._cpack, and the pure-Python one) never open a FIFO or a device node that a running user swaps in for a
listed regular file between the listing's stat and the open (found by attacking the writer, session 9).

Opening is itself an action: a container with CAP_MKNOD (Docker's default) can make a device node in its volume,
and the backup, running as root, opened whatever stood at the name when its turn came and only then checked its type.
/dev/watchdog's numbers arm the host's watchdog when opened (a reboot unless it is fed), a tape device rewinds, a
FIFO's writer is woken. Here a thread swaps regular files and FIFOs atomically (renameat2 RENAME_EXCHANGE) while the
writer packs the folder again and again; inotify (IN_OPEN, watched on the FIFOs' own inodes, which follow them
across renames) counts every open of a FIFO. A FIFO stands in for a device: the same open, nothing to harm.
Before the fix the writer opened a FIFO several times a second; the race cannot be won now (the inode is opened by
O_PATH, checked, and only a regular one is opened for reading through /proc/self/fd).
TAMER_S9_ATTACK_SECONDS: how long to race (default 3)."""

from __future__ import annotations

import contextlib
import ctypes
import io
import os
import threading
import time
from pathlib import Path

import pytest
from tamer.compiled import load, native_blake3
from tamer.volumes import archive_pack, archive_write

_native = load("tamer._cpack", None)
_no_compiled = _native is None or not native_blake3(_native)
_libc = ctypes.CDLL(None, use_errno=True)
_SYS_RENAMEAT2 = 316  # x86_64
_RENAME_EXCHANGE = 2
_AT_FDCWD = -100
_IN_OPEN = 0x20
_SECONDS = float(os.environ.get("TAMER_S9_ATTACK_SECONDS", "3"))


def _pack(root: Path, writer: str) -> None:
    if writer == "python":
        archive_write.write_archive(str(root), io.BytesIO(), {"volume": "v"}, writer="python")
        return
    assert _native is not None
    packer = _native.Packer(str(root), b"data", archive_pack._header, {}, {}, [])
    try:
        while packer.fill():
            pass
    finally:
        packer.close()


@pytest.mark.skipif(os.uname().machine != "x86_64", reason="renameat2's syscall number is x86_64's")
@pytest.mark.parametrize("writer", ["compiled", "python"])
def test_a_fifo_swapped_in_for_a_listed_file_is_never_opened(tmp_path: Path, writer: str) -> None:
    if writer == "compiled" and _no_compiled:
        pytest.skip("tamer._cpack not built with its own BLAKE3")
    root = tmp_path / "vol"
    root.mkdir()
    names = [f"f{k:02d}" for k in range(16)]
    for n in names:
        (root / n).write_bytes(b"x" * 100)
        os.mkfifo(root / f"{n}_")
    watcher = _libc.inotify_init1(os.O_NONBLOCK | os.O_CLOEXEC)
    assert watcher >= 0
    for n in names:
        assert _libc.inotify_add_watch(watcher, str(root / f"{n}_").encode(), _IN_OPEN) >= 0
    pairs = [(str(root / n).encode(), str(root / f"{n}_").encode()) for n in names]
    stop = threading.Event()

    def swap() -> None:
        while not stop.is_set():
            for a, b in pairs:
                _libc.syscall(_SYS_RENAMEAT2, _AT_FDCWD, a, _AT_FDCWD, b, _RENAME_EXCHANGE)

    swapper = threading.Thread(target=swap, daemon=True)
    swapper.start()
    opens = packs = 0
    try:
        end = time.monotonic() + _SECONDS
        while time.monotonic() < end and opens == 0:
            _pack(root, writer)
            packs += 1
            with contextlib.suppress(BlockingIOError):
                opens += len(os.read(watcher, 1 << 16)) // 16  # no names: each event is 16 bytes
    finally:
        stop.set()
        swapper.join()
        os.close(watcher)
    assert packs > 0
    assert opens == 0, (
        f"the {writer} writer opened a FIFO swapped in for a listed file {opens} times in {packs} backups"
    )
