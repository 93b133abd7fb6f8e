"""`tamer run` creates a named volume, then its container fails to start: the cleanup removes the volume it
made, and never a volume of the same name that another client removed and created again in between (it
did: the cleanup removed whatever volume bore the name, with that client's data)."""

from __future__ import annotations

from typing import Any

import pytest
from tamer.errors import TamerError
from tamer.volumes import run as run_mod

BUSYBOX = "tamer-test/busybox:1"


@pytest.mark.parametrize("replace", [False, True])
def test_a_failed_run_removes_only_the_volume_it_made(
    eng: Any, monkeypatch: pytest.MonkeyPatch, replace: bool
) -> None:
    req = run_mod.RunRequest(image=BUSYBOX, name="s8_run", volumes=("s8_run_data:/data",))
    plan = run_mod.plan_run(eng.engine, req)
    assert [c.name for c in plan.create] == ["s8_run_data"]

    def fail_after_replacing(*args: Any, **kwargs: Any) -> str:
        if replace:  # another client: removes the new volume, makes its own of that name, writes into it
            eng.docker("volume", "rm", "-f", "s8_run_data")
            eng.docker("volume", "create", "s8_run_data")
            eng.docker("run", "--rm", "-v", "s8_run_data:/d", BUSYBOX, "sh", "-c", "echo theirs > /d/f")
        raise TamerError("container create failed (injected)")

    monkeypatch.setattr(eng.engine, "create_container_raw", fail_after_replacing)
    with pytest.raises(TamerError, match="injected"):
        run_mod.apply_run(eng.engine, plan)
    monkeypatch.undo()
    volumes = eng.docker("volume", "ls", "-q").split()
    if not replace:
        assert "s8_run_data" not in volumes  # its own volume is still cleaned up
        return
    assert "s8_run_data" in volumes
    assert eng.docker("run", "--rm", "-v", "s8_run_data:/d", BUSYBOX, "cat", "/d/f") == "theirs\n"
