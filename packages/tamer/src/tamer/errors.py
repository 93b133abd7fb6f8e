"""The one exception hierarchy of tamer.

Every message says what was wrong, what was expected and what to do. The CLI
maps each class to an exit code; nothing below prints.
"""

from __future__ import annotations


class TamerError(Exception):
    """Base of every error tamer raises on purpose."""

    exit_code = 1


class UsageError(TamerError):
    """The user asked for something malformed: unknown kind, bad filter, bad value."""

    exit_code = 2


class EngineUnreachable(TamerError):
    """No Docker engine answered where we looked."""


class EnginePermissionDenied(TamerError):
    """The engine's socket exists but this user may not use it."""


class EngineError(TamerError):
    """The engine answered with an error we did not expect."""


class ObjectNotFound(TamerError):
    """An image, container or volume named by the user (or vanished meanwhile) does not exist."""
