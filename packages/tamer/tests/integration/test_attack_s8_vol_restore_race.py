"""A volume removed and created again under the same name (by another client of the engine) while tamer
restores into it: the restore fails clearly and never removes the volume that now has that name (it did:
the cleanup of a failed restore removed whatever volume bore the name, with the other client's data)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from tamer.errors import RestoreRefused
from tamer.operation import faults
from tamer.volumes import backup as b

BUSYBOX = "tamer-test/busybox:1"


@pytest.fixture
def no_faults() -> Iterator[None]:
    yield
    faults.clear()


@pytest.mark.parametrize("point", ["restore.created", "restore.extract.after", "restore.move"])
def test_a_volume_replaced_mid_restore_is_left_alone(
    eng: Any, tmp_path: Path, no_faults: None, point: str
) -> None:
    eng.docker("volume", "create", "s8_src")
    eng.docker(
        "run",
        "--rm",
        "-v",
        "s8_src:/d",
        BUSYBOX,
        "sh",
        "-c",
        "mkdir /d/sub; echo x > /d/sub/f; echo y > /d/g",
    )
    archive = tmp_path / "b.tar.zst"
    b.backup_volume(eng.engine, "s8_src", archive)
    name = "s8_race"
    replaced: list[str] = []

    def replace_it(p: str, ctx: dict[str, Any]) -> None:
        if p == point and not replaced:
            replaced.append(p)
            eng.docker("volume", "rm", "-f", name)
            eng.docker("volume", "create", name)
            eng.docker("run", "--rm", "-v", f"{name}:/d", BUSYBOX, "sh", "-c", "echo theirs > /d/others")

    faults.install(replace_it)
    plan = b.plan_restore(eng.engine, archive, name)
    with pytest.raises(RestoreRefused) as caught:
        b.apply_restore(eng.engine, plan)
    assert replaced == [point]
    assert "removed (or removed and created again) by someone else" in str(caught.value)
    assert name in eng.docker("volume", "ls", "-q").split()  # the other client's volume is still there
    out = eng.docker("run", "--rm", "-v", f"{name}:/d", BUSYBOX, "sh", "-c", "ls -A /d; cat /d/others")
    assert out == "others\ntheirs\n"  # and holds only its own data
