from __future__ import annotations

import faithful
import pytest
from faithful.cli import main


def test_package_imports_and_has_version() -> None:
    assert faithful.__version__ == "0.1.0"
    assert issubclass(faithful.FaithfulError, Exception)


def test_cli_unknown_command_is_usage_error() -> None:
    assert main(["nonsense"]) == 2


def test_cli_help_lists_the_commands(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    for command in ("coin", "compare", "generate"):
        assert command in out
    assert main(["--version"]) == 0
    assert "faithful 0.1.0" in capsys.readouterr().out
