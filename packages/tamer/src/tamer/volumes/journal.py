"""A state file per multi-step volume operation, so a rerun knows where a killed one stopped.

Each step is recorded as done (atomically: write, fsync, rename) right after
it completes; a rerun skips done steps and each step is idempotent, so a
crash between a step and its record only repeats that step. The file lives in
$TAMER_STATE_DIR, else $XDG_STATE_HOME/tamer, else ~/.local/state/tamer.

Tests kill the process at named points with TAMER_TEST_CRASH_AT=<point>
(os._exit, as abrupt as a SIGKILL for our purposes: no cleanup runs).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
from pathlib import Path
from typing import Any

CRASH_ENV = "TAMER_TEST_CRASH_AT"


def crash_point(point: str) -> None:
    """Test hook: exit at once, running no cleanup, when TAMER_TEST_CRASH_AT names this point."""
    if os.environ.get(CRASH_ENV) == point:
        os._exit(137)


def wants_crash(point: str) -> bool:
    return os.environ.get(CRASH_ENV) == point


def state_dir() -> Path:
    explicit = os.environ.get("TAMER_STATE_DIR")
    if explicit:
        return Path(explicit)
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "tamer"


class Journal:
    """The state of one operation (`kind` "move" or "adopt") on one object of one engine."""

    def __init__(self, path: Path, data: dict[str, Any]) -> None:
        self.path = path
        self.data = data

    @staticmethod
    def path_for(kind: str, engine_where: str, name: str) -> Path:
        engine_key = hashlib.sha256(engine_where.encode()).hexdigest()[:10]
        return state_dir() / f"{kind}s" / f"{engine_key}-{name}.json"

    @classmethod
    def load(cls, kind: str, engine_where: str, name: str) -> Journal | None:
        path = cls.path_for(kind, engine_where, name)
        try:
            return cls(path, json.loads(path.read_text()))
        except FileNotFoundError:
            return None

    @classmethod
    def begin(cls, kind: str, engine_where: str, name: str, data: dict[str, Any]) -> Journal:
        j = cls(cls.path_for(kind, engine_where, name), {**data, "done": []})
        j.save()
        return j

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "w") as f:
            json.dump(self.data, f, indent=1)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def is_done(self, step: str) -> bool:
        return step in self.data["done"]

    def mark(self, step: str) -> None:
        if step not in self.data["done"]:
            self.data["done"].append(step)
        self.save()

    def remove(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.path.unlink()
