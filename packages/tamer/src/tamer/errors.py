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


# -- volumes: place, move, back up, restore, adopt, run (tamer.volumes) ----------
class PlacementRefused(UsageError):
    """A volume location (--at/--to PATH) that tamer will not use: relative, `/`, inside the data-root, a file."""


class VolumeInUse(TamerError):
    """The volume has containers using it and the user did not consent to stopping them (--stop-users)."""


class NotEnoughSpace(TamerError):
    """The destination cannot hold the data (checked before copying, or found full while copying)."""


class BackupCorrupt(TamerError):
    """A backup archive failed verification: a checksum mismatch, damage, truncation; names the bad file."""


class RestoreRefused(TamerError):
    """A restore that would be unsafe: an entry escaping the volume, a non-empty target volume."""


class VolumeOperationFailed(TamerError):
    """A move or adopt failed part-way; the message says what was rolled back and what is left."""

    exit_code = 3


class StateUnavailable(UserWarning):
    """Part of tamer's state (e.g. the usage history) could not be read; the command went on without it.

    The CLI shows these on stderr, or as "warning: ..." entries in the envelope's errors.
    """
