"""No shell ever sees user text: argument lists only, and hostile-looking paths stay literal paths."""

from __future__ import annotations

import ast
import json
from pathlib import Path
from typing import Any

import tamer

SRC = Path(tamer.__file__).parent
OURS = [*sorted((SRC / "volumes").glob("*.py")), SRC / "cli" / "volume_cmds.py"]


def test_no_shell_anywhere_in_the_volume_code() -> None:
    for path in OURS:
        tree = ast.parse(path.read_text(), str(path))
        for node in ast.walk(tree):
            if isinstance(node, ast.keyword) and node.arg == "shell":
                raise AssertionError(f"{path}:{node.value.lineno}: shell= passed to a subprocess call")
            if isinstance(node, ast.Attribute) and node.attr in (
                "system",
                "popen",
                "getoutput",
                "getstatusoutput",
            ):
                raise AssertionError(f"{path}:{node.lineno}: {node.attr} runs a shell")


def test_paths_with_shell_syntax_are_only_paths(eng: Any, tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    evil = f"a b;touch {marker};$(touch {marker})`touch {marker}`|x&&y"
    first = tmp_path / f"one {evil}"
    r = eng.tamer("volume", "create", "sh_vol", "--at", str(first))
    assert r.returncode == 0, r.stderr
    eng.docker("run", "--rm", "-v", "sh_vol:/d", "tamer-test/busybox:1", "sh", "-c", "echo kept > /d/f")
    second = tmp_path / f"two {evil}"
    r = eng.tamer(
        "volume",
        "move",
        "sh_vol",
        "--to",
        str(second),
        "--apply",
        "--yes",
        env={"TAMER_STATE_DIR": str(tmp_path / "state")},
    )
    assert r.returncode == 0, r.stderr
    assert (second / "f").read_text() == "kept\n"
    out = tmp_path / f"backup {evil}" / "v;$(id)`id`|x.tar.zst"
    out.parent.mkdir(parents=True)
    r = eng.tamer("volume", "backup", "sh_vol", "-o", str(out), "--json")
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["data"]["path"] == str(out)
    r = eng.tamer("volume", "restore", str(out), "sh_vol2", "--at", str(tmp_path / f"three {evil}"))
    assert r.returncode == 0, r.stderr
    assert (tmp_path / f"three {evil}" / "f").read_text() == "kept\n"
    assert not marker.exists(), "a shell ran on user text"
    r = eng.tamer("volume", "create", f"v;touch {marker}")
    assert r.returncode == 2 and not marker.exists()
