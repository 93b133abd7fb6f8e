"""`-H/--host`'s help says where the engine comes from as the README (and engine/context.py) does.

The help said "default: $DOCKER_HOST, else the local socket", leaving out the docker context
(DOCKER_CONTEXT or the docker config's currentContext), which tamer follows as the docker CLI does:
a user with a context set read that the local socket would be used.
"""

from __future__ import annotations

import argparse

from tamer.cli.app import build_parser


def _with_command(parser: argparse.ArgumentParser, name: str) -> list[argparse.ArgumentParser]:
    """The top parser and the one command build_parser built in full (the rest are stubs)."""
    found = [parser]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            found.append(action.choices[name])
    return found


def test_host_help_names_the_docker_context() -> None:
    for parser in _with_command(build_parser(["df"]), "df"):
        flat = " ".join(parser.format_help().split())
        assert "$DOCKER_HOST, else the local socket" not in flat
        assert "DOCKER_CONTEXT" in flat and "currentContext" in flat, flat
