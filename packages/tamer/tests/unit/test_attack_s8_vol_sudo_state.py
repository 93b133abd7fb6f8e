"""`sudo -E tamer` works in the state folder of the user who ran sudo (tamer.state trusts it): what root
creates there (journals, ledger, history, the plan key, the lock) must stay usable by that user, and no file
of root's elsewhere may be given away through a link the user planted."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="acting as root under sudo needs root")

USER = 65534  # nobody: a real other uid with no access to this checkout, used only as an owner

# what one root run under `sudo -E` writes into the state folder, through tamer's own modules
WRITES = textwrap.dedent(
    """
    import os, sys
    from tamer.journal import Journal
    from tamer.operation import operation_lock
    from tamer.sealing import plan_key
    from tamer.state import state_dir
    folder = state_dir()
    Journal()
    key = plan_key()
    with operation_lock("test"):
        (folder / "operations" / "move").mkdir(parents=True, exist_ok=True)
        (folder / "operations" / "move" / "v.json").write_text("{}")
    print(key.hex(), flush=True)
    if sys.argv[1] == "kill":
        os.kill(os.getpid(), 9)
    """
)


def _as_sudo(folder: Path, how: str = "exit") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "TAMER_STATE_DIR": str(folder), "SUDO_UID": str(USER), "SUDO_GID": str(USER)}
    return subprocess.run(
        [sys.executable, "-c", WRITES, how], env=env, capture_output=True, text=True, timeout=60
    )


def _owners(folder: Path) -> dict[str, int]:
    out = {}
    for base, dirs, files in os.walk(folder):
        for name in dirs + files:
            path = Path(base, name)
            out[str(path.relative_to(folder))] = path.lstat().st_uid
    return out


@pytest.fixture
def user_folder(tmp_path: Path) -> Path:
    tmp_path.chmod(0o755)
    folder = tmp_path / "state"
    folder.mkdir(mode=0o700)
    os.chown(folder, USER, USER)
    return folder


def test_what_root_writes_under_sudo_belongs_to_the_user_afterwards(user_folder: Path) -> None:
    done = _as_sudo(user_folder)
    assert done.returncode == 0, done.stderr
    owners = _owners(user_folder)
    assert {"journal.sqlite", "plan.key", "operation.lock", "operations/move/v.json"} <= set(owners), owners
    assert set(owners.values()) == {USER}, owners
    # and root's next sudo run reads the key it made, now the user's, instead of refusing it
    again = _as_sudo(user_folder)
    assert again.returncode == 0, again.stderr
    assert again.stdout == done.stdout


def test_a_killed_sudo_run_is_handed_back_by_the_next_one(user_folder: Path) -> None:
    killed = _as_sudo(user_folder, "kill")
    assert killed.returncode == -signal.SIGKILL
    assert 0 in _owners(user_folder).values()  # no exit handler ran: what it made is still root's
    done = _as_sudo(user_folder)
    assert done.returncode == 0, done.stderr
    assert set(_owners(user_folder).values()) == {USER}


def test_links_the_user_planted_give_nothing_of_root_s_away(user_folder: Path, tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text("root's")
    secret_dir = tmp_path / "secret-dir"
    secret_dir.mkdir()
    os.link(secret, user_folder / "hard")  # two links: not a file root made here
    (user_folder / "soft").symlink_to(secret)
    (user_folder / "soft-dir").symlink_to(secret_dir)
    done = _as_sudo(user_folder)
    assert done.returncode == 0, done.stderr
    assert secret.stat().st_uid == 0 and secret_dir.stat().st_uid == 0


def test_a_user_run_names_root_owned_leftovers(
    user_folder: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import tamer.state as state

    (user_folder / "journal.sqlite").write_text("")  # root's, as a killed older `sudo -E tamer` left it
    monkeypatch.setenv("TAMER_STATE_DIR", str(user_folder))
    monkeypatch.delenv("SUDO_UID", raising=False)
    monkeypatch.setattr(os, "geteuid", lambda: USER)
    monkeypatch.setattr(state, "_WARNED", set(), raising=False)
    assert state.state_dir() == user_folder
    assert state.state_dir() == user_folder  # warned once per run, not per call
    err = capsys.readouterr().err
    assert err.count("warning") == 1 and "journal.sqlite" in err and f"chown -R {USER}:" in err
