"""Errors and warnings for people show control characters as '?': they quote names anyone can choose."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from tamer.cli.output import shown


def test_control_characters_and_bidi_overrides_are_shown_as_question_marks() -> None:
    assert shown("a\x1b[31mred\rb\u202ec\x00d") == "a?[31mred?b?c?d"


def test_line_breaks_and_tabs_of_a_message_stay() -> None:
    text = "engine went away\nrun `tamer clean --apply`\tonce it is back"
    assert shown(text) == text
    assert shown("x\x1b\ny\t\x07") == "x?\ny\t?"


def test_the_cli_error_line_carries_no_escape_sequence_and_json_keeps_the_text(tmp_path: Path) -> None:
    bad = tmp_path / "nope\x1b]0;owned\x07\x1b[2J"
    cmd = [sys.executable, "-m", "tamer", "volume", "verify", str(bad)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert "error:" in proc.stderr and "\x1b" not in proc.stderr and "\x07" not in proc.stderr
    assert "nope?]0;owned??[2J" in proc.stderr
    proc = subprocess.run([*cmd, "--json"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert str(bad) in json.loads(proc.stdout)["errors"][0]  # exactly as named
