"""Usage errors are caught before any engine is asked (none is running here on purpose)."""

from __future__ import annotations

import json

import pytest
from tamer.cli import main


@pytest.mark.parametrize(
    "argv,fragment",
    [
        (["ls", "images", "--sort", "bogus"], "invalid choice: 'bogus'"),
        (["df", "--top", "-1"], "whole number >= 1"),
        (["ls", "pods"], "unknown kind 'pods'"),
        (["ls", "volumes", "--filter", "colour=red"], "unknown filter 'colour'"),
        (["clean", "--policy", "/nonexistent/policy.toml"], "does not exist"),
        (["policy"], "needs an action"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_usage_errors_exit_2_with_an_envelope(
    argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///nonexistent/docker.sock")
    assert main([*argv, "--json"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "usage" and doc["exit_code"] == 2 and fragment in doc["errors"][0]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert fragment in err and "Traceback" not in err
