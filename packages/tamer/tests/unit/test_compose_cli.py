"""tamer compose check: bad input is a clear error, exit 2, nothing written, the engine never asked."""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
from tamer.cli.app import main

NOWHERE = "unix:///nonexistent/compose-test.sock"  # asking it would fail with exit 1, not 2


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["-H", NOWHERE, *argv])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize(
    ("content", "expect"),
    [
        (b"services: [unclosed\n", "not valid YAML at line 2"),
        (b"services:\n  web:\n    image: a\n  web:\n    image: b\n", "not valid YAML"),  # a duplicate key
        (b"- a\n- b\n", "top level is a list"),
        (b"", "empty document"),
        (b"hello\n", "top level is a string"),
        (b"\xff\xfe\x00garbage", "not UTF-8"),
        (b"a: 1\n---\nb: 2\n", "not valid YAML"),  # two documents
        (b"services:\n  web: [1, 2]\n", "service 'web' is a list"),
        (b"x: &a [*a]\n", "no `services:`"),  # a self-referencing alias: parsed, not looped on
        (b"services: {a: {image: '${X:?X is needed}'}}\n", "required variable X is not set"),
    ],
)
def test_a_file_compose_would_not_read_is_exit_2_and_nothing_is_written(
    content: bytes,
    expect: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("X", raising=False)
    path = tmp_path / "compose.yaml"
    path.write_bytes(content)
    code, _, err = _run(["compose", "check", str(path), "--fix"], capsys)
    assert code == 2 and expect in err and "Traceback" not in err, err
    assert sorted(os.listdir(tmp_path)) == ["compose.yaml"]
    code, out, _ = _run(["--json", "compose", "check", str(path)], capsys)
    doc = json.loads(out)
    assert (
        code == 2 and doc["status"] == "usage" and doc["command"] == "compose" and expect in doc["errors"][0]
    )


def test_missing_files_and_folders(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["compose", "check", str(tmp_path / "nope.yaml")], capsys)
    assert code == 2 and "does not exist" in err
    code, _, err = _run(["compose", "check", str(tmp_path)], capsys)
    assert code == 2 and "no compose file in" in err and "docker-compose.yml" in err
    os.chdir(tmp_path)
    code, _, err = _run(["compose", "check"], capsys)
    assert code == 2 and "no compose file in" in err
    (tmp_path / "dir.yaml").mkdir()
    code, _, err = _run(["compose", "check", "dir.yaml"], capsys)
    assert code == 2 and "no compose file in" in err


def test_the_default_names_are_found_in_order(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The file is found (then the engine is asked: exit 1, naming the engine given)."""
    (tmp_path / "docker-compose.yml").write_text("services: {a: {image: x}}\n")
    os.chdir(tmp_path)
    code, _, err = _run(["compose", "check"], capsys)
    assert code == 1 and "no Docker engine answered" in err and NOWHERE in err
    (tmp_path / "compose.yaml").write_text("services: [")
    code, _, err = _run(["compose", "check"], capsys)
    assert code == 2 and "compose.yaml is not valid YAML" in err


def test_fix_output_rules(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "compose.yaml"
    path.write_text("services: {a: {image: x}}\n")
    code, _, err = _run(["compose", "check", str(path), "-o", str(tmp_path / "x.yaml")], capsys)
    assert code == 2 and "add --fix" in err
    code, _, err = _run(["compose", "check", str(path), "--fix", "-o", str(path)], capsys)
    assert code == 2 and "never overwrites" in err
    (tmp_path / "hard.yaml").hardlink_to(path)
    code, _, err = _run(["compose", "check", str(path), "--fix", "-o", str(tmp_path / "hard.yaml")], capsys)
    assert code == 2 and "never overwrites" in err
    other = tmp_path / "sub"
    other.mkdir()
    code, _, err = _run(["compose", "check", str(path), "--fix", "-o", str(other / "c.yaml")], capsys)
    assert code == 2 and "not in the compose file's folder" in err
    theirs = tmp_path / "compose.tamer.yaml"
    theirs.write_text("mine\n")
    code, _, err = _run(["compose", "check", str(path), "--fix"], capsys)
    assert code == 2 and "was not written by tamer" in err and theirs.read_text() == "mine\n"
    theirs.unlink()
    theirs.symlink_to(tmp_path / "target.yaml")
    code, _, err = _run(["compose", "check", str(path), "--fix"], capsys)
    assert code == 2 and "symbolic link" in err and not (tmp_path / "target.yaml").exists()
    assert path.read_text() == "services: {a: {image: x}}\n"


def test_compose_without_an_action(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["compose"], capsys)
    assert code == 2 and "needs an action" in err


@pytest.mark.parametrize(
    "argv",
    [
        ["compose", "check", "--help"],
        ["compose", "check", "/nonexistent.yaml"],
        ["schedule", "install", "--help"],
    ],
)
def test_help_and_bad_input_import_neither_the_engine_nor_the_yaml_library(argv: list[str]) -> None:
    import subprocess
    import sys

    code = (
        "import sys, json\nfrom tamer.cli import main\n"
        f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    modules = json.loads(proc.stdout.strip().splitlines()[-1])
    heavy = [
        m
        for m in modules
        if m.split(".")[0] in ("docker", "ruamel", "requests") or m.startswith("tamer.engine")
    ]
    assert not heavy, heavy


@pytest.fixture
def hang_guard() -> Iterator[None]:
    """Turn a hang into a failure: a blocking open() of a FIFO is interrupted by the alarm."""

    def _hung(signum: int, frame: object) -> None:
        pytest.fail("compose check hung")  # not an OSError, which the code under test may catch

    old = signal.signal(signal.SIGALRM, _hung)
    signal.alarm(20)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("what", ["fifo", "dev-zero"])
def test_a_fifo_or_endless_file_as_env_or_output_does_not_hang(
    what: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], hang_guard: None
) -> None:
    """A .env or compose.tamer.yaml that is a FIFO (or a link to /dev/zero) hung the check (open() of
    a FIFO blocks until a writer comes; /dev/zero never ends). The .env is skipped, the output refused."""
    path = tmp_path / "compose.yaml"
    path.write_text("services: {a: {image: x}}\n")

    def plant(where: Path) -> None:
        if what == "fifo":
            os.mkfifo(where)
        else:
            where.symlink_to("/dev/zero")

    plant(tmp_path / ".env")
    code, _, err = _run(["compose", "check", str(path)], capsys)
    assert code == 1 and "no Docker engine answered" in err, err  # read the file, then asked the engine
    if what == "fifo":  # a link is refused as a link before it is read; a FIFO must be refused unread
        plant(tmp_path / "compose.tamer.yaml")
        code, _, err = _run(["compose", "check", str(path), "--fix"], capsys)
        assert code == 2 and "not a regular file" in err, err
    plant(tmp_path / "other.yaml")
    code, _, err = _run(["compose", "check", str(tmp_path / "other.yaml")], capsys)
    assert code == 2 and "not a regular file" in err, err


@pytest.mark.parametrize("name", ["compose.override.yaml", "docker-compose.yml", ".env"])
def test_fix_never_writes_a_file_compose_reads_by_itself(
    name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """-o compose.override.yaml (or .env, or another default name) was written: the next `docker compose
    up` of the ORIGINAL would merge the copy in (or read YAML as variables)."""
    path = tmp_path / "compose.yaml"
    path.write_text("services: {a: {image: x}}\n")
    code, _, err = _run(["compose", "check", str(path), "--fix", "-o", str(tmp_path / name)], capsys)
    assert code == 2 and "reads a file of that name by itself" in err, err
    assert sorted(os.listdir(tmp_path)) == ["compose.yaml"]


def test_fix_removes_the_temporary_file_of_a_run_killed_before_its_rename(tmp_path: Path) -> None:
    """A --fix killed between writing its temporary file and renaming it left .compose.tamer.yaml.tamer-PID.tmp
    in the project folder for ever; the next run removes it (and never one of a process still running)."""
    import subprocess
    import sys

    from tamer.compose.files import write_fixed

    original = tmp_path / "compose.yaml"
    original.write_text("services: {a: {image: x}}\n")
    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True
    )
    stale = tmp_path / f".compose.tamer.yaml.tamer-{int(dead.stdout)}.tmp"
    stale.write_text("half a file")
    alive = tmp_path / f".compose.tamer.yaml.tamer-{os.getppid()}.tmp"
    alive.write_text("being written")
    write_fixed(original, tmp_path / "compose.tamer.yaml", "# Written by `tamer compose check --fix`\n")
    assert sorted(os.listdir(tmp_path)) == sorted(["compose.yaml", "compose.tamer.yaml", alive.name])
