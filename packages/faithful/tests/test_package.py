from __future__ import annotations

import faithful
from faithful.cli import main


def test_package_imports_and_has_version() -> None:
    assert faithful.__version__ == "0.1.0"
    assert issubclass(faithful.FaithfulError, Exception)


def test_cli_unknown_command_is_usage_error() -> None:
    assert main(["nonsense"]) == 2
