"""`faithful processors` is built from the one processor table: every entry, in the default order."""

from __future__ import annotations

import json
import subprocess
import sys

from faithful.processors import DEFAULT_ORDER
from faithful.processors.table import TABLE


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "faithful.cli", *args], capture_output=True, text=True, timeout=120
    )


def test_processors_lists_the_table_in_default_order() -> None:
    r = _run("--json", "processors")
    assert r.returncode == 0, r.stderr
    env = json.loads(r.stdout)
    assert env["version"] == 1 and env["status"] == "ok" and env["command"] == "processors"
    names = [row["name"] for row in env["data"]["processors"]]
    assert names == [e.name for e in TABLE]
    assert len(names) == len(DEFAULT_ORDER)
    spec_keys = {k for row in env["data"]["processors"] for p in row["parameters"] for k in p["spec"]}
    assert {"top-p", "top-k", "min-p", "dry", "xtc"} <= spec_keys


def test_processors_text_names_every_spec_part() -> None:
    r = _run("processors")
    assert r.returncode == 0, r.stderr
    for e in TABLE:
        assert f"``{e.name}``" in r.stdout
        for p in e.params:
            for k in p.spec:
                assert f"{k.key}:VALUE" in r.stdout
