"""An option a command does not take points at that command's help (README, `run`: "Other
`docker run` options are not supported (a usage error says so)").

argparse reports leftovers from the top parser, so the error said "(see `tamer --help`)", a page
that lists commands and none of run's options.
"""

from __future__ import annotations

import pytest
from tamer.cli.app import parse_command_line
from tamer.errors import UsageError


@pytest.mark.parametrize(
    ("argv", "where"),
    [
        (["run", "mongo", "--name", "m", "--rm"], "tamer run --help"),
        (["--json", "run", "mongo", "--name", "m", "-d", "-v", "a:/b"], "tamer run --help"),
        (["volume", "backup", "v", "-o", "x.tar.zst", "--compress", "9"], "tamer volume backup --help"),
        (["df", "--bogus"], "tamer df --help"),
    ],
)
def test_an_unknown_option_points_at_its_commands_help(argv: list[str], where: str) -> None:
    with pytest.raises(UsageError) as caught:
        parse_command_line(argv)
    message = str(caught.value)
    assert "unrecognized arguments:" in message
    assert f"(see `{where}`)" in message, message
