"""`tamer df` reads with the cyclic collector off, and gives it back as it found it (a caller that goes on,
as a test or `tamer serve` would, keeps collecting)."""

from __future__ import annotations

import argparse
import gc
from typing import Any

import pytest
import tamer.cli.inspect_cmds as inspect_cmds


class Stop(Exception):
    pass


def test_df_reads_without_the_collector_and_restores_it(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[bool] = []

    def read(*_: Any, **__: Any) -> Any:
        seen.append(gc.isenabled())
        raise Stop  # an error mid-read: the collector must come back all the same

    monkeypatch.setattr(inspect_cmds, "read_inventory", read)
    assert gc.isenabled()
    try:
        with pytest.raises(Stop):
            inspect_cmds.run_df(argparse.Namespace(json=True, quiet=True, top=10, verbose=False))
        assert seen == [False]
        assert gc.isenabled()
        gc.disable()  # a caller that had it off keeps it off
        with pytest.raises(Stop):
            inspect_cmds.run_df(argparse.Namespace(json=True, quiet=True, top=10, verbose=False))
        assert not gc.isenabled()
    finally:
        gc.enable()
        gc.unfreeze()
