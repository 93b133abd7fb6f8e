"""The only code in tamer that talks to Docker.

Everything else receives plain inspect JSON (dicts) from here, so planning and
reporting stay pure and testable on captured JSON.
"""

from __future__ import annotations

from tamer.engine.client import Engine, connect

__all__ = ["Engine", "connect"]
