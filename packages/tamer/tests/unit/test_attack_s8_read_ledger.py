"""tamer.ledger against hostile files (session 8): what json reads but is no ledger, and what is no file.

The ledger is a cache: whatever is in its place, the command goes on, every figure measured afresh,
with a warning, and the next save puts a good ledger there. Two things broke that: an entry dated with
a 400-digit integer (json reads it; `now - at` raised OverflowError and ended the df), and a FIFO in the
ledger's place (the open blocked forever).
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest
from tamer.ledger import ledger_path, open_ledger

ENGINE = "ABCD@/var/lib/docker"
INSPECT = {"Id": "sha256:aa", "Created": "2026-01-01T00:00:00Z", "Size": 10, "Config": {}, "RootFS": {}}


def _write(tmp_path: Path, at: Any, usage: Any = (1, 2, 3)) -> tuple[Path, list[int]]:
    layer = tmp_path / "overlay2" / "cacheid"
    layer.mkdir(parents=True, exist_ok=True)
    st = os.stat(layer)
    stamp = [st.st_ino, st.st_ctime_ns]
    path = ledger_path(ENGINE, tmp_path)
    path.parent.mkdir(exist_ok=True)
    entry = {"chain": "c", "at": at, "dir": stamp, "usage": list(usage)}
    body = {
        "version": 1,
        "engine": ENGINE,
        "layers": {"cacheid": entry},
        "inits": {"m-init": {**entry, "chain": "cid"}},
        "images": {"sha256:aa": {"at": at, "inspect": INSPECT}},
    }
    # json.dumps writes NaN and Infinity as json.loads reads them
    path.write_text(json.dumps(body))
    return layer, stamp


@pytest.mark.parametrize(
    "at",
    [10**400, -(10**400), float("nan"), float("inf"), float("-inf")],
    ids=["1e400", "-1e400", "nan", "inf", "-inf"],
)
def test_a_date_no_clock_can_have_is_a_damaged_entry_not_a_crash(tmp_path: Path, at: Any) -> None:
    layer, _ = _write(tmp_path, at)
    led = open_ledger(ENGINE, now=1_000_000.0, state=tmp_path)
    assert led.image("sha256:aa") is None
    assert led.layer("cacheid", "c", str(layer)) is None
    assert led.init_layer("m-init", "cid", str(layer)) is None
    led.save()
    assert any("3 damaged entries" in w for w in led.warnings), led.warnings


@pytest.mark.parametrize(
    "usage", [(10**400, 1, 1), (1, 1 << 63, 1), (1, 1, 1 << 70)], ids=["1e400", "2**63", "2**70"]
)
def test_a_count_no_file_system_can_hold_is_a_damaged_entry(tmp_path: Path, usage: Any) -> None:
    layer, _ = _write(tmp_path, 999_999.0, usage)
    led = open_ledger(ENGINE, now=1_000_000.0, state=tmp_path)
    assert led.layer("cacheid", "c", str(layer)) is None
    # and a sane one beside it is still used: the check is on the number, not the entry's shape
    _write(tmp_path, 999_999.0, ((1 << 63) - 1, 0, 7))
    again = open_ledger(ENGINE, now=1_000_000.0, state=tmp_path)
    got = again.layer("cacheid", "c", str(layer))
    assert got is not None and got.apparent == (1 << 63) - 1 and got.files == 7


def _open_within(state: Path, seconds: float, unblock: Path | None = None) -> Any:
    """open_ledger on a thread; fails (after unblocking a FIFO's open) when it takes longer than `seconds`."""
    result: list[Any] = []
    thread = threading.Thread(target=lambda: result.append(open_ledger(ENGINE, now=1.0, state=state)))
    thread.start()
    thread.join(seconds)
    if thread.is_alive():
        if unblock is not None:
            fd = os.open(unblock, os.O_WRONLY)  # the reader's open returns; it reads EOF
            os.close(fd)
        thread.join(10)
        pytest.fail(f"open_ledger blocked on {unblock} for more than {seconds} s")
    return result[0]


def test_a_fifo_in_the_ledgers_place_never_blocks_and_is_replaced(tmp_path: Path) -> None:
    path = ledger_path(ENGINE, tmp_path)
    path.parent.mkdir()
    os.mkfifo(path)
    led = _open_within(tmp_path, 5.0, unblock=path)
    assert led.images == {} and "not a regular file" in led.warnings[0]
    led.remember_image("sha256:aa", INSPECT)
    led.save()
    assert json.loads(path.read_text())["images"]["sha256:aa"]["inspect"] == INSPECT


@pytest.mark.parametrize("target", ["/dev/zero", "elsewhere.json", "missing.json"])
def test_a_symlink_in_the_ledgers_place_is_not_followed(tmp_path: Path, target: str) -> None:
    path = ledger_path(ENGINE, tmp_path)
    path.parent.mkdir()
    outside = tmp_path / target if not target.startswith("/") else Path(target)
    if target == "elsewhere.json":
        outside.write_text(json.dumps({"version": 1, "engine": ENGINE, "layers": {}, "images": {}}))
    os.symlink(outside, path)
    led = _open_within(tmp_path, 5.0)
    assert led.warnings and "could not be used" in led.warnings[0]
    led.remember_image("sha256:aa", INSPECT)
    led.save()
    assert not path.is_symlink() and json.loads(path.read_text())["version"] == 1
    if target == "elsewhere.json":  # the file the link named is left as it was
        assert json.loads(outside.read_text())["images"] == {}


def test_a_huge_or_sparse_ledger_is_not_read(tmp_path: Path) -> None:
    path = ledger_path(ENGINE, tmp_path)
    path.parent.mkdir()
    with open(path, "wb") as fh:
        fh.truncate(1 << 40)  # a sparse 1 TiB file: reading it would take memory it claims
    led = _open_within(tmp_path, 5.0)
    assert "more than" in led.warnings[0]
    led.save()
    assert path.stat().st_size < 1000
