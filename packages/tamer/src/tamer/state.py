"""Where tamer keeps its own state (journal, usage history): the user's state directory."""

from __future__ import annotations

import atexit
import os
import stat
import sys
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
    if os.geteuid() == 0 and info.st_uid != 0:
        _hand_back_under_sudo(path, info.st_uid, info.st_gid)
    elif os.geteuid() != 0:
        _warn_foreign_once(path)
    return path


def why_unwritable(folder: Path, exc: BaseException) -> str | None:
    """Why the state folder took no write, when the folder is to blame (full, read-only, not ours) and not
    the file: then the file is fine and advice to move it aside would only throw its history away.
    None when nothing is wrong with the folder (the file itself is damaged)."""
    try:
        fs = os.statvfs(folder)
    except OSError:
        return None
    if fs.f_flag & os.ST_RDONLY:
        return f"{folder} is on a read-only filesystem"
    free = fs.f_bavail * fs.f_frsize
    if free < 1 << 20 or fs.f_favail == 0 or "full" in str(exc):
        return f"the disk holding {folder} is full ({free} bytes, {fs.f_favail} inodes free)"
    if not os.access(folder, os.W_OK):
        return f"you may not write to {folder}"
    return None


def keep_it_advice(path: Path, why: str) -> str:
    """The advice for a state file that is fine but cannot be written (`why`, from why_unwritable)."""
    return (
        f"{why}; the file is not damaged, keep it; make room or fix that folder (or point TAMER_STATE_DIR at a "
        "writable folder on a disk with space), then run this again"
    )


# -- `sudo -E tamer`: root working in the folder of the user who ran sudo --------------------------
# Root's journals, ledger, history and lock would otherwise stay root-owned in the user's folder: the user's
# next run could not update any of them (a clean or move that cannot write its journal, history that stops).
# So root hands every entry it made there back to the folder's owner, now (what a killed root run left) and
# again at exit (what this run made). Only inodes root owns with a single link, opened without following
# links, are handed back: a hard link the user planted to a file of root's elsewhere (/etc/shadow) has two
# links and stays root's, a symlink is never followed.
_HANDED_BACK: set[str] = set()
_WARNED: set[str] = set()
_MAX_DEPTH = 6  # operations/<kind>/<journal> is the deepest tamer writes
_OPEN_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC


def _hand_back_under_sudo(path: Path, uid: int, gid: int) -> None:
    key = str(path)
    if key not in _HANDED_BACK:  # once per run (state_dir() is called often), and once more at exit
        _HANDED_BACK.add(key)
        hand_back(path, uid, gid)
        atexit.register(hand_back, path, uid, gid)


def hand_back(path: Path, uid: int, gid: int) -> int:
    """Give every entry under `path` that root owns (single-link files and folders, links never followed)
    to uid:gid; returns how many were handed back. Best effort: an entry that vanishes or cannot be
    changed is left as it is (the user's next run names it)."""
    try:
        top = os.open(path, _OPEN_FLAGS | os.O_DIRECTORY)
    except OSError:
        return 0
    try:
        return _hand_back_in(top, uid, gid, _MAX_DEPTH)
    finally:
        os.close(top)


def _hand_back_in(dir_fd: int, uid: int, gid: int, depth: int) -> int:
    count = 0
    try:
        names = os.listdir(dir_fd)
    except OSError:
        return 0
    for name in names:
        try:
            fd = os.open(name, _OPEN_FLAGS, dir_fd=dir_fd)
        except OSError:
            continue  # a symlink (ELOOP), gone, or not openable: left alone
        try:
            info = os.fstat(fd)
            is_dir = stat.S_ISDIR(info.st_mode)
            if info.st_uid == 0 and (is_dir or (stat.S_ISREG(info.st_mode) and info.st_nlink == 1)):
                os.fchown(fd, uid, gid)
                count += 1
            if is_dir and depth > 0:
                count += _hand_back_in(fd, uid, gid, depth - 1)
        except OSError:
            pass
        finally:
            os.close(fd)
    return count


def foreign_entries(path: Path, limit: int = 20) -> list[str]:
    """Entries under the state folder (to tamer's depth) that this user does not own: what an older
    `sudo -E tamer` left root-owned, which this user's runs cannot update."""
    euid = os.geteuid()
    found: list[str] = []
    stack: list[tuple[Path, int]] = [(path, _MAX_DEPTH)]
    while stack and len(found) < limit:
        folder, depth = stack.pop()
        try:
            entries = list(os.scandir(folder))
        except OSError:
            continue
        for entry in entries:
            try:
                info = entry.stat(follow_symlinks=False)
            except OSError:
                continue
            if info.st_uid != euid:
                found.append(entry.path)
            elif entry.is_dir(follow_symlinks=False) and depth > 0:
                stack.append((Path(entry.path), depth - 1))
    return found[:limit]


def _warn_foreign_once(path: Path) -> None:
    key = str(path)
    if key in _WARNED:
        return
    _WARNED.add(key)
    found = foreign_entries(path)
    if found:
        sys.stderr.write(
            f"tamer: warning: {len(found)}{'+' if len(found) >= 20 else ''} entr(ies) in tamer's state "
            f"folder {path} belong to another user ({found[0]}), left by a `sudo -E tamer` that was killed "
            "or older than this one; tamer cannot update them (journals, history, ledger); "
            f"`sudo chown -R {os.geteuid()}:{os.getegid()} {path}` gives them back\n"
        )


def _others_can_write(info: os.stat_result) -> str | None:
    """How users other than this one (and root) could write the folder, or None."""
    mode = stat.S_IMODE(info.st_mode)
    if mode & 0o002 or (mode & 0o020 and not _private_group(info.st_gid, info.st_uid)):
        return f"is writable by its group or by everyone (mode {mode:04o})"
    if info.st_uid not in trusted_owners():
        return f"belongs to another user (uid {info.st_uid})"
    return None


def trusted_owners() -> set[int]:
    """The uids whose state (folder, plan key, journals) this run trusts: this user and root, and under
    `sudo -E tamer` (root, SUDO_UID set) the user who ran sudo, whose folder root then works in."""
    euid = os.geteuid()
    trusted = {euid, 0}
    sudo_uid = os.environ.get("SUDO_UID", "")
    if euid == 0 and sudo_uid.isdigit():
        trusted.add(int(sudo_uid))
    return trusted


def _private_group(gid: int, uid: int) -> bool:
    """The owner's own group (Debian's user private groups, where umask 002 is the norm): no one else in it."""
    import grp
    import pwd

    try:
        group, owner = grp.getgrgid(gid), pwd.getpwuid(uid)
    except KeyError:
        return False
    return owner.pw_gid == gid and group.gr_name == owner.pw_name and set(group.gr_mem) <= {owner.pw_name}
