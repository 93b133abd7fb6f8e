"""The state folder holds what tamer trusts (journals it resumes, the key that seals plans, the history it
reports): a folder another user can write is refused, as ssh refuses a writable ~/.ssh."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from tamer.state import StateDirUnusable, state_dir

needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")


@pytest.fixture
def folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    path = tmp_path / "state"
    path.mkdir(mode=0o700)
    monkeypatch.setenv("TAMER_STATE_DIR", str(path))
    monkeypatch.delenv("SUDO_UID", raising=False)
    return path


def test_a_private_folder_is_used(folder: Path) -> None:
    assert state_dir() == folder


@pytest.mark.parametrize("mode", [0o777, 0o703, 0o1777])
def test_a_folder_everyone_can_write_is_refused(folder: Path, mode: int) -> None:
    folder.chmod(mode)
    with pytest.raises(StateDirUnusable) as caught:
        state_dir()
    assert "writable by its group or by everyone" in str(caught.value) and f"chmod go-w {folder}" in str(
        caught.value
    )


@needs_root
def test_a_folder_a_shared_group_can_write_is_refused_its_owner_s_private_group_is_not(folder: Path) -> None:
    folder.chmod(0o770)
    os.chown(folder, 0, 100)  # a shared group (users)
    with pytest.raises(StateDirUnusable):
        state_dir()
    os.chown(folder, 0, 0)  # root's own group, nobody else in it (user private groups: umask 002)
    assert state_dir() == folder


@needs_root
def test_a_folder_of_another_user_is_refused_unless_that_user_ran_sudo(
    folder: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    os.chown(folder, 65534, 65534)
    with pytest.raises(StateDirUnusable) as caught:
        state_dir()
    assert "belongs to another user (uid 65534)" in str(caught.value)
    monkeypatch.setenv("SUDO_UID", "65534")  # `sudo -E tamer`: the state folder of the user who ran sudo
    assert state_dir() == folder
