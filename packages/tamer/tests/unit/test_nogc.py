"""The cyclic collector is off while an archive is written or read, and back as it was found after
(tamer.nogc): on success, on failure, and when it was off before."""

from __future__ import annotations

import gc
import io
from pathlib import Path

import pytest
from tamer.errors import BackupCorrupt
from tamer.nogc import without_cyclic_gc
from tamer.volumes.archive import read_archive
from tamer.volumes.archive_write import write_archive


class _Watching(io.BytesIO):
    """An output file that notes whether the collector was on at each write."""

    def __init__(self) -> None:
        super().__init__()
        self.states: set[bool] = set()

    def write(self, data: object) -> int:  # type: ignore[override]
        self.states.add(gc.isenabled())
        return super().write(data)  # type: ignore[arg-type]


@pytest.fixture(autouse=True)
def _collector_on() -> object:
    gc.enable()
    yield None
    gc.enable()


def test_the_wrapper_restores_what_it_found() -> None:
    seen: list[bool] = []

    @without_cyclic_gc
    def run(fail: bool) -> int:
        seen.append(gc.isenabled())
        if fail:
            raise ValueError("boom")
        return 7

    assert run(False) == 7 and gc.isenabled()
    with pytest.raises(ValueError, match="boom"):
        run(True)
    assert gc.isenabled()
    gc.disable()
    run(False)
    assert not gc.isenabled()  # it was off: left off
    assert seen == [False, False, False]
    assert run.__name__ == "run"


@pytest.mark.parametrize("writer", ["tar", "python", "compiled"])
def test_a_backup_and_its_reading_run_without_the_collector(tmp_path: Path, writer: str) -> None:
    root = tmp_path / "data"
    (root / "d").mkdir(parents=True)
    for i in range(50):
        (root / "d" / f"f{i}").write_bytes(b"x" * i)
    out = _Watching()
    write_archive(str(root), out, {"format": 2, "volume": "v"}, writer=writer)
    assert out.states == {False} and gc.isenabled()
    archive = tmp_path / "a.tar.zst"
    archive.write_bytes(out.getvalue())
    states: list[bool] = []
    read_archive(str(archive), on_entry=lambda _m: states.append(gc.isenabled()))
    assert states and set(states) == {False} and gc.isenabled()
    archive.write_bytes(out.getvalue()[:-100])  # cut short: refused, and the collector back on
    with pytest.raises(BackupCorrupt):
        read_archive(str(archive))
    assert gc.isenabled()
