"""faithful's --json envelope against the schema both tools share (tamer's tests keep an identical check).

{"version": 1, "command": str | null, "status": ..., "exit_code": int, "data": any, "errors": [str, ...]}
on stdout, on success, on failure and on usage errors alike, wherever --json is placed.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import pytest
from faithful import cli

STATUS_BY_EXIT_CODE = {0: "ok", 1: "error", 2: "usage", 3: "partial", 130: "interrupted"}
KEYS = {"version", "command", "status", "exit_code", "data", "errors"}


def check_envelope(text: str, *, exit_code: int | None = None) -> dict[str, Any]:
    """Parse stdout as exactly one envelope and check every field; returns the document."""
    doc = json.loads(text)
    assert isinstance(doc, dict) and set(doc) == KEYS, f"envelope keys: {doc}"
    assert type(doc["version"]) is int and doc["version"] == 1, (
        f"version must be the number 1: {doc['version']!r}"
    )
    assert doc["command"] is None or (isinstance(doc["command"], str) and doc["command"]), doc["command"]
    code = doc["exit_code"]
    assert type(code) is int and code in STATUS_BY_EXIT_CODE, f"exit_code: {code!r}"
    assert doc["status"] == STATUS_BY_EXIT_CODE[code], f"status {doc['status']!r} for exit code {code}"
    if exit_code is not None:
        assert code == exit_code, f"exit_code {code} in the envelope, the process exited {exit_code}"
    errors = doc["errors"]
    assert isinstance(errors, list) and all(isinstance(e, str) and e.strip() for e in errors), errors
    if code == 0:
        assert all(e.startswith("warning:") for e in errors), f"status ok with errors: {errors}"
    else:
        assert errors, "a failure must say why in errors"
    return doc


@pytest.fixture
def corpus(tmp_path: Path) -> Path:
    path = tmp_path / "corpus.txt"
    path.write_text("ab\nabc\nb\nba\ncab\naa\nbca\nabcab\n")
    return path


CASES: list[tuple[list[str], int, str | None, str | None]] = [
    (["coin", "--n", "5"], 0, "coin", None),
    (["coin", "--p", "0.55", "0.5"], 2, "coin", "sum to 1"),
    (["coin", "--p", "1.5"], 2, "coin", "[0, 1]"),
    (["coin", "--frobnicate"], 2, "coin", "frobnicate"),
    (["frobnicate"], 2, None, "invalid choice"),
    ([], 2, None, "no command"),
    (["compare", "--model", "ngram:{corpus}:2", "--decoders", "beam:0"], 2, "compare", "whole number >= 1"),
    (
        [
            "compare",
            "--model",
            "ngram:{corpus}:2",
            "--decoders",
            "sample",
            "--n",
            "5",
            "--max-new-tokens",
            "40",
            "--threshold",
            "0",
            "--exact",
        ],
        1,
        "compare",
        "enumerable",
    ),
    (
        ["generate", "--model", "ngram:{corpus}:2", "--decoder", "greedy", "--max-new-tokens", "3"],
        0,
        "generate",
        None,
    ),
]


@pytest.mark.parametrize(("argv", "code", "command", "fragment"), CASES)
@pytest.mark.parametrize("where", ["first", "last"])
def test_every_outcome_prints_the_shared_envelope(
    argv: list[str], code: int, command: str | None, fragment: str | None, where: str, corpus: Path
) -> None:
    argv = [a.format(corpus=corpus) for a in argv]
    full = ["--json", *argv] if where == "first" else [*argv, "--json"]
    out, err = io.StringIO(), io.StringIO()
    rc = cli.main(full, stdout=out, stderr=err)
    assert rc == code, out.getvalue() + err.getvalue()
    doc = check_envelope(out.getvalue(), exit_code=rc)
    assert doc["command"] == command
    if fragment:
        assert fragment in doc["errors"][-1]
    assert err.getvalue() == ""  # under --json everything is in the envelope


def test_interrupted_and_unexpected_errors_keep_the_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    def interrupted(args: Any) -> Any:
        raise KeyboardInterrupt

    def broken(args: Any) -> Any:
        raise RuntimeError("boom")

    for handler, code in ((interrupted, 130), (broken, 1)):
        monkeypatch.setitem(cli.COMMANDS, "coin", handler)
        out = io.StringIO()
        assert cli.main(["coin", "--json"], stdout=out, stderr=io.StringIO()) == code
        check_envelope(out.getvalue(), exit_code=code)
