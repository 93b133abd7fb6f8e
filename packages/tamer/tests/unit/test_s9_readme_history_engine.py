"""`tamer history --engine ID` (README: "reads the history of an engine that no longer answers")
names the address that history was recorded through, not whatever -H or DOCKER_HOST says now.

It printed "History of engine ID (ADDRESS)" with the address of -H, an engine it never asked (one
that does not answer, or another engine altogether), as if the snapshots came from there.
"""

from __future__ import annotations

import json
import time

import pytest
from tamer.cli.app import main
from tamer.snapshots import KindSize, Snapshot, record


def _snap(t: float) -> Snapshot:
    return Snapshot(
        taken_at=t,
        engine="E@/r",
        host="unix:///recorded.sock",
        sizing="local",
        kinds=(KindSize("volume", 1, 10, 0, 10),),
        reclaimable_safe=0,
        reclaimable_decision=0,
    )


def test_history_of_a_named_engine_shows_its_recorded_address(capsys: pytest.CaptureFixture[str]) -> None:
    now = time.time()
    for i in range(3):
        record(_snap(now - 3600 * (3 - i)))
    assert main(["-H", "unix:///elsewhere.sock", "history", "--engine", "E@/r"]) == 0
    text = capsys.readouterr().out
    assert "History of engine E@/r (unix:///recorded.sock)" in text, text
    assert "elsewhere" not in text
    assert main(["history", "--engine", "E@/r", "--json", "-H", "unix:///elsewhere.sock"]) == 0
    assert json.loads(capsys.readouterr().out)["data"]["host"] == "unix:///recorded.sock"
