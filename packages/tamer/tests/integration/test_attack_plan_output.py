"""Attack: `tamer plan -o FILE` wrote over whatever FILE was (a typo'd path, your notes, or, through a
link planted in /tmp, any file root may write). It may only create a file or replace an earlier saved plan,
and never writes through a symlink."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def test_plan_output_never_overwrites_what_is_not_a_plan(eng: Any, tmp_path: Path) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes\n")
    victim = tmp_path / "victim"
    victim.write_text("precious\n")
    link = tmp_path / "plan.json"
    link.symlink_to(victim)
    for target in (notes, link):
        proc = eng.tamer("plan", "-o", str(target))
        assert proc.returncode == 2 and "nothing was removed" in proc.stderr, proc
    assert notes.read_text() == "my notes\n" and victim.read_text() == "precious\n" and link.is_symlink()
    # a new file, then a newer plan in its place: fine, and the result opens
    fresh = tmp_path / "fresh.json"
    for _ in range(2):
        proc = eng.tamer("plan", "-o", str(fresh))
        assert proc.returncode == 0, proc
        assert json.loads(fresh.read_text())["format"] == "tamer-plan"
    assert eng.tamer("clean", "--plan", str(fresh)).returncode == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["fresh.json", "notes.txt", "plan.json", "victim"]
