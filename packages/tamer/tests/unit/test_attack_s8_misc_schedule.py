"""Hostile review (session 8, helper F) of `tamer schedule`: values systemd reads differently from
how they were written. systemd-analyze's debug dump is the oracle of what systemd makes of a unit."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tamer.cli.app import main

ANALYZE = shutil.which("systemd-analyze")
needs_analyze = pytest.mark.skipif(
    ANALYZE is None, reason="!!! systemd-analyze is not installed (Debian: apt-get install systemd)"
)
POLICY = 'version = 1\n[containers]\nstates = ["exited"]\nolder_than = "1d"\n'


@pytest.fixture(autouse=True)
def _isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("DOCKER_HOST", raising=False)


def _policy(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(POLICY)
    path.chmod(0o644)
    return path


def _install(policy: Path, unit_dir: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(
        [
            "schedule",
            "install",
            "--system",
            "--policy",
            os.fsdecode(policy),
            "--every",
            "1d",
            "--unit-dir",
            str(unit_dir),
        ]
    )
    return code, capsys.readouterr().err


@needs_analyze
def test_a_policy_path_ending_in_a_backslash_does_not_swallow_the_next_setting(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # systemd joins a line ending in `\` with the next: Description=... pol\ took `After=docker.service`
    # into the description, and the timed clean lost its ordering after Docker
    policy = _policy(tmp_path / "p" / "pol\\")
    unit_dir = tmp_path / "units"
    code, err = _install(policy, unit_dir, capsys)
    assert code == 0, err
    text = (unit_dir / "tamer-clean.service").read_text()
    assert not [line for line in text.splitlines() if line.endswith("\\")], text
    assert ANALYZE is not None
    proc = subprocess.run(
        [ANALYZE, "verify", "--man=no", str(unit_dir / "tamer-clean.service")],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_LEVEL": "debug"},
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    dump = (proc.stdout + proc.stderr).split("-> Unit tamer-clean.service:", 1)[1]
    description = next(x for x in dump.splitlines() if x.strip().startswith("Description:"))
    assert "After=" not in description and str(policy) in description, description
    assert any(x.strip() == "After: docker.service (origin-file)" for x in dump.splitlines()), dump[:3000]


@pytest.mark.parametrize("where", ["policy", "state"])
def test_a_path_that_is_not_utf8_is_a_clear_usage_error_and_nothing_is_written(
    where: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # a policy (or state folder) named with a byte that is not UTF-8: the unit text could not be
    # encoded and the command died with "internal error: UnicodeEncodeError"
    odd = os.fsdecode(b"p\xff")
    policy = _policy(tmp_path / (odd if where == "policy" else "ok") / "policy.toml")
    if where == "state":
        monkeypatch.setenv("TAMER_STATE_DIR", str(tmp_path / odd / "state"))
    unit_dir = tmp_path / "units"
    code, err = _install(policy, unit_dir, capsys)
    assert code == 2, err
    assert "internal error" not in err and "UTF-8" in err and "nothing was written" in err, err
    assert not unit_dir.exists() or not list(unit_dir.iterdir())


def test_an_install_killed_before_its_rename_leaves_no_temporary_after_the_next_install(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # `.tamer-clean.service.tamer-PID.tmp` of a killed install stayed in the unit folder for ever
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = unit_dir / f".tamer-clean.service.tamer-{dead.pid}.tmp"
    stale.write_text("half a unit")
    live = unit_dir / f".tamer-clean.timer.tamer-{os.getppid()}.tmp"  # a running install's: kept
    live.write_text("being written")
    someone = unit_dir / ".other.tmp"
    someone.write_text("not ours")
    code, err = _install(_policy(tmp_path / "p" / "policy.toml"), unit_dir, capsys)
    assert code == 0, err
    hidden = sorted(p.name for p in unit_dir.iterdir() if p.name.startswith("."))
    assert hidden == sorted([live.name, someone.name]), hidden
