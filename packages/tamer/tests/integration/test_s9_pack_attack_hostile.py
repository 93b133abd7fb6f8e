"""The compiled archive writer (tamer._cpack) against a running user that rewrites the volume while it is backed up
(session 9's attack; no bug found here, kept as a guard): folders swapped for links to a folder outside the volume,
files swapped for FIFOs, device nodes, sockets and links to a file outside, files truncated, extended and replaced,
renamed across folders, folders removed and made again. Every backup ends (no crash, no hang), nothing from outside
the volume is in the stream (a canary's bytes and names), every member is below data/ or one of the archive's own
two, and the archive verifies (every file's digest is of what was stored).
TAMER_S9_ATTACK_ROUNDS: how many backups race the writer (default 4, about 3 s)."""

from __future__ import annotations

import io
import os
import random
import shutil
import socket
import stat
import tarfile
import threading
from pathlib import Path

import pytest
import zstandard
from tamer.compiled import load, native_blake3
from tamer.volumes.archive import HEADER_NAME, MANIFEST_NAME, read_archive
from tamer.volumes.archive_write import write_archive

_native = load("tamer._cpack", None)
pytestmark = pytest.mark.skipif(
    _native is None or not native_blake3(_native), reason="tamer._cpack not built with its own BLAKE3"
)
ROUNDS = int(os.environ.get("TAMER_S9_ATTACK_ROUNDS", "4"))
CANARY = b"s9-canary-from-outside-the-volume-"
FOLDERS, FILES = 12, 12


def _build(root: Path) -> None:
    root.mkdir()
    for i in range(FOLDERS):
        (root / f"d{i}").mkdir()
        for j in range(FILES):
            (root / f"d{i}" / f"f{j}").write_bytes(os.urandom(j * 9000))


def _hostile(root: Path, outside: Path, seed: int, stop: threading.Event) -> None:
    r = random.Random(seed)
    while not stop.is_set():
        d = root / f"d{r.randrange(FOLDERS)}"
        f = d / f"f{r.randrange(FILES)}"
        new = Path(f"{f}.new")
        try:
            k = r.randrange(9)
            if k == 0:  # a folder swapped for a link to a folder outside, and back
                d.rename(f"{d}.away")
                d.symlink_to(outside)
                d.unlink()
                Path(f"{d}.away").rename(d)
            elif k == 1:
                os.mkfifo(new)
                new.rename(f)
            elif k == 2:
                os.mknod(new, 0o600 | stat.S_IFCHR, os.makedev(1, 3))  # /dev/null's numbers
                new.rename(f)
            elif k == 3:
                with socket.socket(socket.AF_UNIX) as s:
                    s.bind(str(new))
                new.rename(f)
            elif k == 4:
                new.symlink_to(outside / "secret")
                new.rename(f)
            elif k == 5:
                new.write_bytes(os.urandom(r.choice([0, 100, 70000, 2 << 20])))
                new.rename(f)
            elif k == 6:
                os.truncate(f, r.choice([0, 10, 3 << 20]))
            elif k == 7:
                f.rename(root / f"d{r.randrange(FOLDERS)}" / f"m{r.randrange(FILES)}")
            else:
                shutil.rmtree(d)
                d.mkdir()
                (d / "f0").write_bytes(b"z" * 1000)
        except OSError:
            pass  # the other thread got there first: the race is the point


@pytest.mark.skipif(os.geteuid() != 0, reason="device nodes need root")
def test_a_running_user_rewriting_the_volume_brings_nothing_from_outside_and_the_archive_verifies(
    tmp_path: Path,
) -> None:
    outside = tmp_path / "outside"
    (outside / "sub").mkdir(parents=True)
    (outside / "secret").write_bytes(CANARY * 200)
    (outside / "sub" / "s9-outside-name").write_bytes(CANARY)
    raced = 0
    for rnd in range(ROUNDS):
        root = tmp_path / f"vol{rnd}"
        _build(root)
        stop = threading.Event()
        hostiles = [
            threading.Thread(target=_hostile, args=(root, outside, rnd * 10 + k, stop), daemon=True)
            for k in range(2)
        ]
        for h in hostiles:
            h.start()
        archive = tmp_path / f"a{rnd}.tar.zst"
        try:
            with open(archive, "wb") as out:
                stats, _, _ = write_archive(str(root), out, {"volume": "hostile"}, writer="compiled")
        finally:
            stop.set()
            for h in hostiles:
                h.join()
        stream = zstandard.ZstdDecompressor().stream_reader(io.BytesIO(archive.read_bytes())).read()
        assert CANARY not in stream
        assert b"s9-outside-name" not in stream
        with tarfile.open(fileobj=io.BytesIO(stream), mode="r:") as tar:
            names = tar.getnames()
        assert names[0] == HEADER_NAME and names[-1] == MANIFEST_NAME and names[1] == "data"
        data = names[2:-1]
        assert all(n.startswith("data/") for n in data)
        assert stats.entries == len(data)
        read_archive(str(archive))  # every file's digest is of the bytes stored
        raced += len(stats.warnings)
        shutil.rmtree(root)
    assert raced, "the running user's changes never met the writer: nothing was attacked"
