"""The ledger on the private engine, against what json reads but no clock or file system has (session 8).

A ledger whose entries are dated with a 400-digit integer (json reads it; a truncated write, another
tool, or a hand edit leaves it) ended `tamer df` with an OverflowError where a damaged entry must be
ignored: here every entry of a real ledger is given such a date, or NaN, or a byte count past 2**63,
and df must say the same figures as with no ledger, warn, and leave a good ledger behind.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

BUSYBOX = "tamer-test/busybox:1"


def _df(eng: Any, state: Path) -> dict[str, Any]:
    proc = subprocess.run(
        [sys.executable, "-m", "tamer", "df", "--json"],
        capture_output=True,
        text=True,
        env={**os.environ, "DOCKER_HOST": eng.host, "TAMER_STATE_DIR": str(state)},
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    data: dict[str, Any] = json.loads(proc.stdout)["data"]
    return data


def _figures(data: dict[str, Any]) -> tuple[Any, Any]:
    return data["totals"], data["data_root_allocated"]


@pytest.mark.parametrize("damage", ["at-1e400", "at-nan", "usage-2**64"])
def test_entries_no_clock_or_disk_can_hold_are_ignored_by_a_real_df(
    eng: Any, tmp_path: Path, damage: str
) -> None:
    eng.docker("create", "--name", f"s8-ledger-{damage.replace('*', '')}", BUSYBOX, "true")  # an init layer
    state = tmp_path / "state"
    cold = _df(eng, state)
    [path] = list((state / "ledger").glob("*.json"))
    text = path.read_text()
    led = json.loads(text)
    assert led["layers"] and led["images"] and led["inits"], "a ledger with every kind of entry"
    for table in ("layers", "images", "inits"):
        for entry in led[table].values():
            if damage == "usage-2**64":
                if table != "images":
                    entry["usage"][1] = 1 << 64
            else:
                entry["at"] = 10**400 if damage == "at-1e400" else float("nan")
    path.write_text(json.dumps(led))
    warm = _df(eng, state)
    assert _figures(warm) == _figures(cold)
    assert any("damaged entries" in note for note in warm["notes"]), warm["notes"]
    rewritten = json.loads(path.read_text())
    assert all(isinstance(e["at"], float) and e["at"] < 1e12 for e in rewritten["layers"].values())
    assert all(max(e["usage"]) < 1 << 63 for e in rewritten["layers"].values())
    again = _df(eng, state)  # the good ledger now serves the same figures, without a note
    assert _figures(again) == _figures(cold) and not [n for n in again["notes"] if "ledger" in n]
