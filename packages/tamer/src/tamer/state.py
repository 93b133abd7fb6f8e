"""Where tamer keeps its own state (journal, usage history): the user's state directory."""

from __future__ import annotations

import os
from pathlib import Path

from tamer.errors import TamerError


class StateDirUnusable(TamerError):
    """tamer's state directory cannot be created or used (a file in its place, no permission)."""


class StateUnavailable(UserWarning):
    """Part of tamer's state (e.g. the usage history) could not be read; the command went on without it.

    The CLI shows these on stderr, or as "warning: ..." entries in the envelope's errors.
    """


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
    except OSError as exc:
        raise StateDirUnusable(
            f"tamer's state directory {path} cannot be used ({exc.strerror or exc}); expected a folder this "
            "user can write; fix or remove it, or point TAMER_STATE_DIR at another folder"
        ) from None
    return path
