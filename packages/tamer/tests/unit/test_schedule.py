"""`tamer schedule`: units systemd accepts (systemd-analyze is the oracle), periods that mean what they
say (systemd-analyze calendar), and a unit folder where only tamer's own files are ever touched."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import subprocess
from datetime import datetime
from pathlib import Path

import pytest
from tamer.cli.app import COMMANDS, main
from tamer.schedule.units import MARKER, parse_every

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="!!! systemd-analyze is not installed (Debian: apt-get install systemd)"
)
POLICY = 'version = 1\n[containers]\nstates = ["exited"]\nolder_than = "1d"\n'
HAS_RECORD = any(c.name == "record" for c in COMMANDS)


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)


def _policy(folder: Path, name: str = "policy.toml") -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / name
    path.write_text(POLICY)
    path.chmod(0o644)
    return path


def _run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _verify(
    unit_dir: Path, user: bool, tmp_path: Path, debug: bool = False
) -> subprocess.CompletedProcess[str]:
    assert ANALYZE is not None
    units = sorted(str(p) for p in unit_dir.iterdir() if p.suffix in (".service", ".timer"))
    env = {**os.environ, "SYSTEMD_LOG_LEVEL": "debug" if debug else "notice"}
    cmd = [ANALYZE, "verify", "--man=no"]
    if user:  # the user manager needs a runtime folder, which no login made here
        runtime = tmp_path / "runtime"
        runtime.mkdir(mode=0o700, exist_ok=True)
        env["XDG_RUNTIME_DIR"] = str(runtime)
        cmd.append("--user")
    return subprocess.run([*cmd, *units], capture_output=True, text=True, env=env, timeout=60)


# -- periods -----------------------------------------------------------------------------------


def _elapses(expression: str) -> list[datetime]:
    assert ANALYZE is not None
    out = subprocess.run(
        [ANALYZE, "calendar", "--iterations=4", expression],
        capture_output=True,
        text=True,
        env={**os.environ, "TZ": "UTC"},
        timeout=30,
        check=True,
    ).stdout
    stamps = []
    for line in out.splitlines():
        key, _, value = line.strip().partition(": ")
        if key == "Next elapse" or key.startswith("Iter."):
            stamps.append(datetime.strptime(value.strip(), "%a %Y-%m-%d %H:%M:%S %Z"))
    return stamps


@needs_analyze
@pytest.mark.parametrize(
    "text", ["15m", "20m", "30m", "1h", "2h", "6h", "12h", "1d", "1w", "60m", "24h", "7d"]
)
def test_a_calendar_period_fires_exactly_that_often(text: str) -> None:
    every = parse_every(text)
    assert every.calendar is not None
    stamps = _elapses(every.calendar)
    assert len(stamps) == 4
    gaps = {(b - a).total_seconds() for a, b in itertools.pairwise(stamps)}
    assert gaps == {every.seconds}, (text, every.calendar, stamps)
    assert "Persistent=true" in every.timer_lines()


@pytest.mark.parametrize(
    ("text", "seconds"), [("3d", 3 * 86400), ("90m", 5400), ("5h", 18000), ("2w", 1209600)]
)
def test_a_period_with_no_exact_calendar_is_monotonic(text: str, seconds: int) -> None:
    every = parse_every(text)
    assert every.calendar is None and every.seconds == seconds
    lines = every.timer_lines()
    assert "OnBootSec=15min" in lines and not any(line.startswith("Persistent") for line in lines)
    assert any(line.startswith("OnUnitActiveSec=") for line in lines)


def test_the_random_delay_is_a_tenth_of_the_period_at_most_an_hour() -> None:
    assert parse_every("1h").random_delay_s == 360
    assert parse_every("6h").random_delay_s == 2160
    assert parse_every("1d").random_delay_s == 3600 and parse_every("1w").random_delay_s == 3600


@pytest.mark.parametrize(
    "text",
    [
        "",
        " ",
        "0h",
        "-1d",
        "1.5h",
        "1 d",
        "1y",
        "10s",
        "5m",
        "14m",
        "daily",
        "1h30m",
        "367d",
        "99999999999h",
        "1H",
        "1d\n",
    ],
)
def test_a_nonsense_period_is_a_usage_error_and_nothing_is_written(
    text: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    code, _out, err = _run(
        ["schedule", "install", "--policy", str(policy), f"--every={text}", "--unit-dir", str(unit_dir)],
        capsys,
    )
    assert code == 2 and "--every" in err and "nothing was written" in err, err
    assert not unit_dir.exists()


# -- the units ---------------------------------------------------------------------------------


@needs_analyze
@pytest.mark.parametrize("manager", ["--system", "--user"])
@pytest.mark.parametrize("every", ["1d", "6h", "3d"])
def test_installed_units_pass_systemd_analyze_verify(
    manager: str, every: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    code, out, err = _run(
        [
            "schedule",
            "install",
            manager,
            "--policy",
            str(policy),
            "--every",
            every,
            "--unit-dir",
            str(unit_dir),
        ],
        capsys,
    )
    assert code == 0, err
    names = sorted(p.name for p in unit_dir.iterdir())
    expected = ["tamer-clean.service", "tamer-clean.timer", "tamer-watch.service"]
    if HAS_RECORD:
        expected += ["tamer-record.service", "tamer-record.timer"]
    assert names == sorted(expected)
    proc = _verify(unit_dir, manager == "--user", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert str(unit_dir) not in proc.stderr, proc.stderr  # no warning about our files either
    user = "--user " if manager == "--user" else ""
    assert f"systemctl {user}daemon-reload && systemctl {user}enable --now tamer-clean.timer" in out
    assert "tamer-watch.service" in out.split("enable --now", 1)[1]
    clean = (unit_dir / "tamer-clean.service").read_text()
    assert clean.startswith(MARKER + "\n")
    assert "Nice=10" in clean and "IOSchedulingClass=idle" in clean
    assert "ProtectSystem" not in clean and "ProtectHome" not in clean and "PrivateTmp" not in clean
    timer = (unit_dir / "tamer-clean.timer").read_text()
    assert "RandomizedDelaySec=" in timer and "WantedBy=timers.target" in timer


def _exec_argv(unit_dir: Path, tmp_path: Path, unit: str) -> list[str]:
    """ExecStart= as systemd itself parsed it (verify's debug dump), with `$$` as exec time turns it to `$`."""
    proc = _verify(unit_dir, False, tmp_path, debug=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    dump = proc.stdout + proc.stderr
    section = dump.split(f"-> Unit {unit}:", 1)[1]
    line = next(x for x in section.splitlines() if "Command Line:" in x)
    return [arg.replace("$$", "$") for arg in _shell_words(line.split("Command Line:", 1)[1].strip())]


def _shell_words(text: str) -> list[str]:
    """Split as a POSIX shell does (systemd prints command lines so): inside double quotes a backslash
    escapes $ ` " and itself (shlex.split leaves `\\$` alone, so it cannot be used here)."""
    words: list[str] = []
    word: list[str] | None = None
    quoted = False
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and (not quoted or text[i + 1] in '$`"\\'):
            word = (word or []) + [text[i + 1]]
            i += 2
            continue
        if ch == '"':
            quoted = not quoted
            word = word or []
        elif ch == " " and not quoted:
            if word is not None:
                words.append("".join(word))
            word = None
        else:
            word = (word or []) + [ch]
        i += 1
    if word is not None:
        words.append("".join(word))
    assert not quoted, text
    return words


@needs_analyze
def test_paths_with_spaces_quotes_percent_and_dollar_reach_tamer_unchanged(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = tmp_path / 'a b %n $HOME "q" \\back'
    policy = _policy(folder, "p%i$x 'y'.toml")
    state = tmp_path / "state %h $USER"
    monkeypatch.setenv("TAMER_STATE_DIR", str(state))
    unit_dir = tmp_path / "units"
    host = "unix:///tmp/x%y$z.sock"
    code, _, err = _run(
        [
            "schedule",
            "install",
            "--policy",
            str(policy),
            "--every",
            "1d",
            "--unit-dir",
            str(unit_dir),
            "-H",
            host,
        ],
        capsys,
    )
    assert code == 0, err
    argv = _exec_argv(unit_dir, tmp_path, "tamer-clean.service")
    assert argv[-5:] == ["clean", "--apply", "--yes", "--policy", str(policy)], argv
    assert Path(argv[0]).is_absolute() and os.access(argv[0], os.X_OK)
    dump = _verify(unit_dir, False, tmp_path, debug=True)
    env_lines = {
        x.strip() for x in (dump.stdout + dump.stderr).splitlines() if x.strip().startswith("Environment:")
    }
    assert f"Environment: TAMER_STATE_DIR={state}" in env_lines, env_lines
    assert f"Environment: DOCKER_HOST={host}" in env_lines, env_lines
    assert not state.exists()  # named in the unit, not created by install


def test_the_engine_named_with_h_wins_over_docker_host(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DOCKER_HOST", "unix:///from/env.sock")
    policy = _policy(tmp_path / "p")
    code, out, _ = _run(
        [
            "schedule",
            "install",
            "--policy",
            str(policy),
            "--every",
            "1d",
            "--print",
            "-H",
            "unix:///given.sock",
        ],
        capsys,
    )
    assert code == 0
    assert 'Environment="DOCKER_HOST=unix:///given.sock"' in out and "/from/env.sock" not in out


def test_print_shows_the_units_and_writes_nothing(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    code, out, _ = _run(
        [
            "--json",
            "schedule",
            "install",
            "--policy",
            str(policy),
            "--every",
            "1w",
            "--unit-dir",
            str(unit_dir),
            "--print",
        ],
        capsys,
    )
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "ok" and doc["command"] == "schedule"
    assert doc["data"]["printed"] is True and doc["data"]["written"] == []
    texts = {u["name"]: u["text"] for u in doc["data"]["units"]}
    assert "OnCalendar=weekly" in texts["tamer-clean.timer"]
    assert f"--policy {policy.resolve()}" in texts["tamer-clean.service"]
    assert not unit_dir.exists()


def test_the_policy_is_named_by_its_real_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    real = _policy(tmp_path / "real")
    link = tmp_path / "link.toml"
    link.symlink_to(real)
    os.chdir(tmp_path)
    code, out, _ = _run(["schedule", "install", "--policy", "link.toml", "--every", "1d", "--print"], capsys)
    assert code == 0 and f"--policy {real.resolve()}" in out and "link.toml" not in out.split("ExecStart=")[1]


@pytest.mark.parametrize(
    ("content", "mode", "expect"),
    [
        (None, 0o644, "does not exist"),
        ("version = 1\n[containers]\nstates = 3\n", 0o644, "policy"),
        ("not toml ===", 0o644, "policy"),
        (POLICY, 0o664, "writable by its group"),
        (POLICY, 0o646, "writable by its group or by everyone"),
    ],
)
def test_a_bad_or_unsafe_policy_is_refused_and_nothing_is_written(
    content: str | None, mode: int, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = tmp_path / "p" / "policy.toml"
    policy.parent.mkdir()
    if content is not None:
        policy.write_text(content)
        policy.chmod(mode)
    unit_dir = tmp_path / "units"
    code, _, err = _run(
        ["schedule", "install", "--policy", str(policy), "--every", "1d", "--unit-dir", str(unit_dir)], capsys
    )
    assert code == 2 and expect in err, err
    assert not unit_dir.exists()


def test_a_policy_in_a_folder_anyone_can_write_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    folder = tmp_path / "open"
    policy = _policy(folder)
    folder.chmod(0o777)
    code, _, err = _run(["schedule", "install", "--policy", str(policy), "--every", "1d", "--print"], capsys)
    assert code == 2 and "writable by everyone" in err
    folder.chmod(0o1777)  # sticky, like /tmp: others cannot replace our file
    code, _, err = _run(["schedule", "install", "--policy", str(policy), "--every", "1d", "--print"], capsys)
    assert code == 0, err


def test_a_newline_in_a_path_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    policy = _policy(tmp_path / "a\nb")
    unit_dir = tmp_path / "units"
    code, _, err = _run(
        ["schedule", "install", "--policy", str(policy), "--every", "1d", "--unit-dir", str(unit_dir)], capsys
    )
    assert code == 2 and "newline" in err and not unit_dir.exists()


# -- the unit folder: only tamer's files -------------------------------------------------------


def test_install_never_overwrites_a_file_it_did_not_write(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    theirs = unit_dir / "tamer-watch.service"
    theirs.write_text("[Service]\nExecStart=/bin/true\n")
    code, _, err = _run(
        ["schedule", "install", "--policy", str(policy), "--every", "1d", "--unit-dir", str(unit_dir)], capsys
    )
    assert code == 2 and "was not written by tamer" in err
    assert sorted(p.name for p in unit_dir.iterdir()) == ["tamer-watch.service"]
    assert theirs.read_text() == "[Service]\nExecStart=/bin/true\n"
    # a symlink in the way is not tamer's either (and is never written through)
    theirs.unlink()
    target = tmp_path / "elsewhere.service"
    target.write_text("mine\n")
    theirs.symlink_to(target)
    code, _, err = _run(
        ["schedule", "install", "--policy", str(policy), "--every", "1d", "--unit-dir", str(unit_dir)], capsys
    )
    assert code == 2 and target.read_text() == "mine\n"


def test_remove_deletes_exactly_tamer_s_units_and_their_enable_links(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    assert (
        main(["schedule", "install", "--policy", str(policy), "--every", "1d", "--unit-dir", str(unit_dir)])
        == 0
    )
    ours = sorted(p.name for p in unit_dir.iterdir())
    # what `systemctl enable` would add, and neighbours that are not tamer's
    wants = unit_dir / "timers.target.wants"
    wants.mkdir()
    (wants / "tamer-clean.timer").symlink_to("../tamer-clean.timer")
    multi = unit_dir / "multi-user.target.wants"
    multi.mkdir()
    (multi / "tamer-watch.service").symlink_to(unit_dir / "tamer-watch.service")
    (wants / "apt-daily.timer").symlink_to("/lib/systemd/system/apt-daily.timer")
    (unit_dir / "other.service").write_text("[Service]\nExecStart=/bin/true\n")
    (unit_dir / "tamer-mine.service").write_text(
        "# my own, named like tamer's\n[Service]\nExecStart=/bin/true\n"
    )
    (unit_dir / "tamer-link.service").symlink_to(unit_dir / "tamer-clean.service")  # not a regular file
    copied = unit_dir / "tamer-copy.timer.bak"
    copied.write_text(MARKER + "\n")  # not a unit name
    capsys.readouterr()

    code, out, _ = _run(["schedule", "remove", "--unit-dir", str(unit_dir), "--print"], capsys)
    assert code == 0 and "would remove" in out and all(name in out for name in ours)
    assert all((unit_dir / name).exists() for name in ours)

    code, out, _ = _run(["--json", "schedule", "remove", "--unit-dir", str(unit_dir)], capsys)
    doc = json.loads(out)
    assert code == 0 and sorted(doc["data"]["removed"]) == ours
    assert sorted(doc["data"]["links_removed"]) == [
        "multi-user.target.wants/tamer-watch.service",
        "timers.target.wants/tamer-clean.timer",
    ]
    assert "stop tamer-clean.timer" in doc["data"]["then"] and "daemon-reload" in doc["data"]["then"]
    left = sorted(str(p.relative_to(unit_dir)) for p in unit_dir.rglob("*"))
    assert left == sorted(
        [
            "multi-user.target.wants",
            "other.service",
            "tamer-copy.timer.bak",
            "tamer-link.service",  # a dangling link now, but not tamer's to remove
            "tamer-mine.service",
            "timers.target.wants",
            "timers.target.wants/apt-daily.timer",
        ]
    )
    code, out, _ = _run(["schedule", "remove", "--unit-dir", str(unit_dir)], capsys)
    assert code == 0 and "nothing removed" in out


def test_installing_again_replaces_tamer_s_units_and_drops_unwanted_ones(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    argv = ["schedule", "install", "--policy", str(policy), "--unit-dir", str(unit_dir)]
    assert main([*argv, "--every", "1d"]) == 0
    assert main([*argv, "--every", "6h", "--no-watch", "--record-every", "off"]) == 0
    capsys.readouterr()
    assert sorted(p.name for p in unit_dir.iterdir()) == ["tamer-clean.service", "tamer-clean.timer"]
    assert "00/6:00:00" in (unit_dir / "tamer-clean.timer").read_text()
    assert not list(unit_dir.glob(".*.tmp"))
    code, out, _ = _run(["schedule", "list", "--unit-dir", str(unit_dir)], capsys)
    assert code == 0 and "tamer-clean.service, tamer-clean.timer" in out


def test_schedule_without_an_action_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _run(["schedule"], capsys)
    assert code == 2 and "install, remove or list" in err


# -- found by a hostile pass (each failed before its fix) -------------------------------------------


def test_an_edited_unit_is_neither_overwritten_nor_removed(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """`systemctl edit --full tamer-clean.service` keeps the marker line and changes the rest: install
    overwrote the edit and remove deleted it, silently. Now both refuse, change nothing and say why."""
    policy = _policy(tmp_path / "p")
    unit_dir = tmp_path / "units"
    argv = ["schedule", "install", "--policy", str(policy), "--unit-dir", str(unit_dir)]
    assert main([*argv, "--every", "1d"]) == 0
    (unit_dir / "timers.target.wants").mkdir()
    (unit_dir / "timers.target.wants" / "tamer-clean.timer").symlink_to("../tamer-clean.timer")
    service = unit_dir / "tamer-clean.service"
    edited = service.read_text().replace("Nice=10", "Nice=19")
    service.write_text(edited)
    before = {p.name: p.read_bytes() for p in unit_dir.iterdir() if p.is_file()}
    capsys.readouterr()

    for again in ([*argv, "--every", "6h"], [*argv, "--every", "6h", "--print"]):
        code, _, err = _run(again, capsys)
        assert code == 2 and "tamer-clean.service was edited since tamer wrote it" in err, err
    code, _, err = _run([*argv, "--every", "1d", "--no-watch"], capsys)
    assert code == 2 and "edited" in err
    for remove in (["--print"], []):
        code, _, err = _run(["schedule", "remove", "--unit-dir", str(unit_dir), *remove], capsys)
        assert code == 2 and "tamer-clean.service was edited" in err and "drop-in" in err, err
    assert {p.name: p.read_bytes() for p in unit_dir.iterdir() if p.is_file()} == before
    assert (unit_dir / "timers.target.wants" / "tamer-clean.timer").is_symlink()
    code, out, _ = _run(["schedule", "list", "--unit-dir", str(unit_dir)], capsys)
    assert code == 0 and "tamer-clean.service (edited since)" in out

    # an edited unit that is no longer wanted is not removed by install either
    service.write_text(before["tamer-clean.service"].decode().replace("Nice=19", "Nice=10"))
    watch = unit_dir / "tamer-watch.service"
    watch.write_text(watch.read_text() + "# mine\n")
    code, _, err = _run([*argv, "--every", "1d", "--no-watch"], capsys)
    assert code == 2 and "tamer-watch.service was edited" in err and watch.exists()
    # moved away, everything goes as before
    watch.unlink()
    code, out, _ = _run(["schedule", "remove", "--unit-dir", str(unit_dir)], capsys)
    assert code == 0 and not list(unit_dir.glob("*.service")), out


def test_a_policy_someone_else_could_replace_through_a_folder_above_it_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The folder above the policy belonged to another user (who can rename a file of ours away and put
    theirs in its place) or was group-writable: install accepted it, and the root timer would have run
    their policy."""
    if os.geteuid() != 0:
        pytest.skip("!!! needs root to hand a folder to another uid")
    policy = _policy(tmp_path / "theirs" / "deep")
    argv = ["schedule", "install", "--policy", str(policy), "--every", "1d", "--print"]
    os.chown(tmp_path / "theirs", 4242, 4242)
    try:
        code, _, err = _run(argv, capsys)
        assert code == 2 and "belongs to uid 4242" in err and str(tmp_path / "theirs") in err, err
    finally:
        os.chown(tmp_path / "theirs", os.geteuid(), os.getegid())
    (tmp_path / "theirs").chmod(0o775)
    code, _, err = _run(argv, capsys)
    assert code == 2 and "writable by its group" in err, err
    (tmp_path / "theirs").chmod(0o1775)  # sticky: the group cannot replace our file
    code, _, err = _run(argv, capsys)
    assert code == 0, err


@pytest.mark.parametrize(
    ("every", "expect"), [("0d", "too often"), ("0m", "too often"), ("9999999d", "too long")]
)
def test_a_zero_or_huge_period_says_what_is_wrong_with_it(
    every: str, expect: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    policy = _policy(tmp_path / "p")
    code, _, err = _run(["schedule", "install", "--policy", str(policy), "--every", every, "--print"], capsys)
    assert code == 2 and expect in err, err


def test_a_relative_xdg_config_home_is_ignored(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The XDG spec: a relative XDG_CONFIG_HOME is invalid and ignored (units went under the cwd)."""
    monkeypatch.setenv("XDG_CONFIG_HOME", "relative")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    policy = _policy(tmp_path / "p")
    code, out, _ = _run(
        ["--json", "schedule", "install", "--user", "--policy", str(policy), "--every", "1d", "--print"],
        capsys,
    )
    assert code == 0 and json.loads(out)["data"]["unit_dir"] == str(
        tmp_path / "home" / ".config/systemd/user"
    )
