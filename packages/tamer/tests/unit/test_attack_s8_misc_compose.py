"""Hostile review (session 8, helper F) of `tamer compose check --fix`: an alias bomb inside the
long-syntax entry --fix names must cost what its text costs, as it does everywhere else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

FIX = """
import sys
from pathlib import Path
from tamer.compose.files import read_compose, parse_yaml, plain
from tamer.compose.fix import apply_fix, plan_names, render
from tamer.compose.model import build_model
from tamer.compose.rules import EngineFacts, check

path = Path(sys.argv[1])
src = read_compose(path)
model = build_model(src.data, src.env, src.project_dir, str(path))
facts = EngineFacts("/var/lib/docker", "json-file", {}, {"mongo:7": {"id": "sha256:x", "volumes": []}})
planned = plan_names(model, check(model, facts), [])
assert [p.path for p in planned] == ["/data/db"], planned
apply_fix(src.document, planned)
text = render(src.document, src.text)
again = build_model(plain(parse_yaml(text, "copy"), src.env, "copy"), src.env, src.project_dir)
(mount,) = [m for s in again.services for m in s.mounts]
assert (mount.kind, mount.source, mount.target) == ("volume", planned[0].key, "/data/db"), mount
print(len(text))
"""


def test_an_alias_bomb_in_the_entry_fix_names_is_copied_in_linear_time(tmp_path: Path) -> None:
    # `_unanchored_copy` walked the copy without remembering shared nodes: 10^9 paths, 10^9 visits (hung)
    lines = ['x-l0: &l0 ["a", "a", "a", "a", "a", "a", "a", "a", "a", "a"]']
    for i in range(1, 10):
        lines.append(f"x-l{i}: &l{i} [{', '.join([f'*l{i - 1}'] * 10)}]")
    lines += [
        "services:",
        "  db:",
        "    image: mongo:7",
        "    volumes:",
        "      - type: volume",
        "        target: /data/db",
        "        x-bomb: *l9",
    ]
    compose = tmp_path / "compose.yaml"
    compose.write_text("\n".join(lines) + "\n")
    try:
        proc = subprocess.run(
            [sys.executable, "-c", FIX, str(compose)], capture_output=True, text=True, timeout=120
        )
    except subprocess.TimeoutExpired:
        pytest.fail("--fix walked every path of an alias bomb (10^9) instead of each node once")
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert int(proc.stdout) < 10 * len(compose.read_text())  # the copy stays the size of its text
