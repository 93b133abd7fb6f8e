"""Where tamer keeps its own state (journal, usage history): the user's state directory."""

from __future__ import annotations

import os
import stat
from pathlib import Path

from tamer.errors import StateUnavailable as StateUnavailable  # defined there: light to import
from tamer.errors import TamerError


class StateDirUnusable(TamerError):
    """tamer's state directory cannot be created or used (a file in its place, no permission)."""


def state_dir() -> Path:
    """$TAMER_STATE_DIR, else $XDG_STATE_HOME/tamer, else ~/.local/state/tamer (created 0700).

    Raises StateDirUnusable when it cannot be created (a file in its place, no permission).
    """
    explicit = os.environ.get("TAMER_STATE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = Path(base) / "tamer"
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        info = path.stat()
    except OSError as exc:
        raise StateDirUnusable(
            f"tamer's state directory {path} cannot be used ({exc.strerror or exc}); expected a folder this "
            "user can write; fix or remove it, or point TAMER_STATE_DIR at another folder"
        ) from None
    others = _others_can_write(info)
    if others:
        # what is in it is trusted: journals a clean or a move resumes, the key that seals plans, the ledger
        # and the history that df, metrics and history report; a folder another user can write (a
        # TAMER_STATE_DIR under /tmp made by someone else first) lets them plant any of it
        raise StateDirUnusable(
            f"tamer's state directory {path} {others}, who could plant files tamer trusts there (journals it "
            "resumes, the key that seals plans, the history it reports); expected a folder only this user "
            f"can write; `chmod go-w {path}` (and chown it to this user), or point TAMER_STATE_DIR at "
            "another folder; nothing was done with it"
        )
    return path


def _others_can_write(info: os.stat_result) -> str | None:
    """How users other than this one (and root) could write the folder, or None."""
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o002 or (mode & 0o020 and not _private_group(info.st_gid, info.st_uid)):
        return f"is writable by its group or by everyone (mode {mode:04o})"
    euid = os.geteuid()
    trusted = {euid, 0}
    sudo_uid = os.environ.get("SUDO_UID", "")
    if euid == 0 and sudo_uid.isdigit():
        trusted.add(int(sudo_uid))  # `sudo -E tamer`: the folder of the user who ran sudo
    if info.st_uid not in trusted:
        return f"belongs to another user (uid {info.st_uid})"
    return None


def _private_group(gid: int, uid: int) -> bool:
    """The owner's own group (Debian's user private groups, where umask 002 is the norm): no one else in it."""
    import grp
    import pwd

    try:
        group, owner = grp.getgrgid(gid), pwd.getpwuid(uid)
    except KeyError:
        return False
    return owner.pw_gid == gid and group.gr_name == owner.pw_name and set(group.gr_mem) <= {owner.pw_name}
