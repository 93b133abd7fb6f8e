"""Global options (-H/--host, --json, -q/--quiet, --traceback) work before or after the command.

The bug (issue 10, failure 1): `tamer -H ADDR clean --apply --yes` acted on the default
engine, because the subcommand's default for --host overwrote the value given before it.
Every command that talks to an engine must use the address given, wherever it stands, and
never the one in DOCKER_HOST. No engine runs at either address here: the error must name
the address given with -H.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
from pathlib import Path

import pytest
from tamer.cli import app
from tamer.cli.app import build_parser, main, make_global_options_win, parse_args

GIVEN = "unix:///nonexistent/given-with-H.sock"
DEFAULT = "unix:///nonexistent/docker-host-env.sock"

# every command that talks to the engine, with the arguments it needs
ENGINE_COMMANDS: list[list[str]] = [
    ["df"],
    ["ls"],
    ["ls", "volumes"],
    ["plan"],
    ["clean"],
    ["clean", "--apply", "--yes"],
    ["clean", "--abandon"],
    ["watch", "--once"],
    ["volume", "create", "v1"],
    ["volume", "ls"],
    ["volume", "backup", "v1", "-o", "/nonexistent/out.tar.zst"],
    ["volume", "restore", "/nonexistent/in.tar.zst", "v1"],
    ["volume", "move", "v1", "--to", "/nonexistent/dest"],
    ["volume", "move", "v1", "--to", "/nonexistent/dest", "--apply", "--yes"],
    ["volume", "move", "v1", "--to", "/nonexistent/dest", "--rollback"],
    ["adopt", "c1"],
    ["adopt", "c1", "--apply", "--yes"],
    ["run", "img", "--name", "c1"],
    ["record"],
    ["history"],
    ["history", "--since", "1d", "--by", "volume"],
    ["metrics"],
    ["serve", "--listen", "127.0.0.1:0"],
    ["compose", "check", "compose.yaml"],  # written by _isolated: the file is read, then its images asked for
]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DOCKER_HOST", DEFAULT)
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.chdir(tmp_path)
    (tmp_path / "compose.yaml").write_text("services:\n  db:\n    image: mongo:7\n")


def _placements(argv: list[str], option: list[str]) -> list[list[str]]:
    # before the command, right after it, and at the very end
    return [[*option, *argv], [argv[0], *option, *argv[1:]], [*argv, *option]]


@pytest.mark.parametrize("argv", ENGINE_COMMANDS, ids=" ".join)
def test_host_is_used_wherever_it_is_placed(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    for form in (["-H", GIVEN], ["--host", GIVEN], [f"--host={GIVEN}"]):
        for full in _placements(argv, form):
            code = main(full)
            err = capsys.readouterr().err
            assert code == 1, (full, err)
            assert GIVEN in err and DEFAULT not in err, (full, err)
            assert "no Docker engine answered" in err and "Traceback" not in err


@pytest.mark.parametrize("argv", ENGINE_COMMANDS, ids=" ".join)
def test_json_quiet_and_traceback_are_used_wherever_they_are_placed(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    for full in _placements(argv, ["--json", "-q", "--traceback", "-H", GIVEN]):
        assert main(full) == 1
        captured = capsys.readouterr()
        doc = json.loads(captured.out)
        assert doc["exit_code"] == 1 and GIVEN in doc["errors"][0], full
        assert "Traceback" in captured.err, full


@pytest.mark.parametrize(
    "argv",
    [*ENGINE_COMMANDS, ["policy", "show"], ["policy", "check", "p.toml"], ["volume", "verify", "f"]],
    ids=" ".join,
)
def test_every_global_option_reaches_every_command(argv: list[str]) -> None:
    parser = build_parser()
    plain = parse_args(parser, argv)
    assert (plain.host, plain.json, plain.quiet, plain.traceback) == (None, False, False, False)
    for full in _placements(argv, ["-q", "--json", "--traceback", "-H", GIVEN]):
        args = parse_args(build_parser(), full)
        assert (args.host, args.json, args.quiet, args.traceback) == (GIVEN, True, True, True), full
    # short flags clustered, and the last -H wins when given twice
    args = parse_args(build_parser(), ["-qH", "unix:///first.sock", *argv, "-H", GIVEN])
    assert args.quiet and args.host == GIVEN


def test_no_subcommand_default_can_override_a_global_option() -> None:
    """However a command module declares them (its own option, its own default, set_defaults)."""
    parser = app._Parser(prog="t", parents=[app.global_options_parser()])
    sub = parser.add_subparsers(dest="command", parser_class=app._Parser)
    own = sub.add_parser("own")
    own.add_argument("--host", "-H", default="unix:///a-default-that-must-not-win.sock")
    own.add_argument("--json", action="store_true", default=False)
    own.add_argument("-q", "--quiet", dest="be_quiet", action="store_true")
    own.set_defaults(traceback=False, host="unix:///set-defaults-must-not-win.sock")
    nested = sub.add_parser("nested", parents=[app.global_options_parser()])
    leaf = nested.add_subparsers(dest="action").add_parser("leaf", parents=[app.global_options_parser()])
    leaf.set_defaults(json=False, quiet=False)
    make_global_options_win(parser)

    for argv in (
        ["-H", GIVEN, "--json", "-q", "--traceback", "own"],
        ["-H", GIVEN, "--json", "nested", "-q", "leaf", "--traceback"],
    ):
        args = parse_args(parser, argv)
        assert (args.host, args.json, args.quiet, args.traceback) == (GIVEN, True, True, True), argv
    args = parse_args(parser, ["own"])
    assert (args.host, args.json, args.quiet, args.traceback) == (None, False, False, False)


def test_options_after_dashes_belong_to_the_container_command(capsys: pytest.CaptureFixture[str]) -> None:
    args = parse_args(build_parser(), ["run", "img", "--name", "c1", "-H", GIVEN, "--", "sh", "--json", "-q"])
    assert args.host == GIVEN and not args.json and not args.quiet
    assert args.container_command == ["sh", "--json", "-q"]
    assert main(["run", "img", "--name", "c1", "-H", GIVEN, "--", "sh", "--json"]) == 1
    captured = capsys.readouterr()
    assert captured.out == "" and GIVEN in captured.err


def test_abbreviated_options_are_not_guessed(capsys: pytest.CaptureFixture[str]) -> None:
    # `--js` is not --json: a usage error, not a silent guess
    assert main(["df", "--js"]) == 2
    assert "unrecognized arguments: --js" in capsys.readouterr().err


def test_policy_show_takes_host_and_asks_no_engine() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert main(["-H", GIVEN, "policy", "show", "--json"]) == 0
    assert json.loads(out.getvalue())["data"]["policy"].startswith("# tamer's built-in default policy")


def test_parse_args_fills_defaults_only_for_what_was_not_given() -> None:
    args = parse_args(build_parser(), ["df"])
    assert isinstance(args, argparse.Namespace) and args.host is None and args.json is False


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_host_is_a_usage_error_not_the_default_engine(
    empty: str, capsys: pytest.CaptureFixture[str]
) -> None:
    for full in (["-H", empty, "df"], ["df", f"--host={empty}"]):
        assert main(full) == 2
        err = capsys.readouterr().err
        assert "needs an engine address" in err and DEFAULT not in err


def test_a_missing_host_value_is_a_usage_error_with_an_envelope(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--json", "df", "-H"]) == 2
    doc = json.loads(capsys.readouterr().out)
    assert doc["status"] == "usage" and "-H" in doc["errors"][0]


def _every_command(parser: argparse.ArgumentParser, path: list[str]) -> list[list[str]]:
    """Each command of the parser tree, with dummy values for what it requires (commands added later too)."""
    found = [path] if path else []
    args: list[str] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += _every_command(child, [*path, name])
        elif not action.option_strings and action.nargs not in ("?", "*", argparse.SUPPRESS):
            args.append("x1")
        elif action.required:
            args += [action.option_strings[0], "/nonexistent/x1"]
    if path:
        found[0] = [*path, *args]
    return found


def test_no_command_ever_reaches_docker_host_when_h_is_given(capsys: pytest.CaptureFixture[str]) -> None:
    commands = _every_command(build_parser(), [])
    assert len(commands) >= 15 and ["df"] in commands
    for argv in commands:
        for full in (["-H", GIVEN, *argv], [*argv, "-H", GIVEN]):
            main(full)
            captured = capsys.readouterr()
            said = captured.out + captured.err
            assert DEFAULT not in said, (full, said)
            assert "internal error" not in said and "Traceback" not in said, (full, said)
            if "no Docker engine answered" in said:
                assert GIVEN in said, (full, said)


@pytest.mark.parametrize("action", ["df", "plan", "clean", "history"])
def test_fleet_refuses_h_wherever_it_stands(action: str, capsys: pytest.CaptureFixture[str]) -> None:
    """tamer fleet reaches its hosts through the hosts file: an -H there is refused, never used or ignored."""
    argv = ["fleet", action, "--hosts", "/nonexistent/hosts.toml"]
    for full in _placements(argv, ["-H", GIVEN]):
        assert main(full) == 2, full
        err = capsys.readouterr().err
        assert "drop -H" in err and "nothing was run" in err, (full, err)
