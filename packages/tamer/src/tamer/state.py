"""Where tamer keeps its own state (journal, usage history): the user's state directory."""

from __future__ import annotations

import os
from pathlib import Path


def state_dir() -> Path:
    """$TAMER_STATE_DIR, else $XDG_STATE_HOME/tamer, else ~/.local/state/tamer (created 0700)."""
    explicit = os.environ.get("TAMER_STATE_DIR")
    if explicit:
        path = Path(explicit)
    else:
        base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
        path = Path(base) / "tamer"
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path
