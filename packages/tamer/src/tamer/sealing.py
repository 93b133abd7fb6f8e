"""Saved plans as authenticated values: an HMAC-SHA256 keyed by a per-host secret in the state dir.

`tamer plan -o FILE` writes a sealed plan; `tamer clean --plan FILE` opens it
and refuses it, changing nothing, when the seal is missing, wrong or does not
match the content (a plan edited by hand, made on another host, or by another
user). A plan id is an unkeyed digest anyone can recompute; the seal is not.

The secret (32 random bytes, `<state>/plan.key`) is created 0600 on first
use and refused when it is not a regular file owned by this user that no one
else may read: a key others can read lets them seal any plan.

A sealed plan is still only an input: apply re-derives every action from the
recorded policy and the live host (the file can narrow what happens, never
widen it) and re-checks its invariants at the moment of each removal.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import stat
from pathlib import Path
from typing import Any

from tamer.errors import TamerError, UsageError
from tamer.plan import Plan
from tamer.state import state_dir, trusted_owners

KEY_NAME = "plan.key"
KEY_BYTES = 32
FORMAT = "tamer-plan"
FORMAT_VERSION = 2


class PlanKeyUnsafe(TamerError):
    """The per-host plan key exists but may not be trusted (others can read it, not ours, not a file)."""


class PlanRefused(UsageError):
    """A saved plan that is not sealed by this host's key, or not a plan at all."""


def plan_key(folder: Path | None = None) -> bytes:
    """This host's secret for sealing plans, created 0600 on first use.

    Raises PlanKeyUnsafe when the file is group/world readable or writable, not owned by this user, a
    symlink or not a regular file, or not KEY_BYTES long.
    """
    path = (folder or state_dir()) / KEY_NAME
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        try:
            os.write(fd, secrets.token_bytes(KEY_BYTES))
            os.fsync(fd)
        finally:
            os.close(fd)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise PlanKeyUnsafe(
            f"the plan key {path} cannot be opened ({exc.strerror}); expected a regular file "
            "owned by you with mode 0600; remove it (saved plans then need remaking)"
        ) from None
    try:
        st = os.fstat(fd)
        problem = None
        if not stat.S_ISREG(st.st_mode):
            problem = "is not a regular file"
        elif st.st_uid != os.geteuid() and not (os.geteuid() == 0 and st.st_uid in trusted_owners()):
            # root under `sudo -E` reads the key of the user whose state folder it works in (and hands
            # what it creates back to that user: tamer.state)
            problem = f"is owned by uid {st.st_uid}, not by you (uid {os.geteuid()})"
        elif st.st_mode & 0o077:
            problem = f"has mode {stat.S_IMODE(st.st_mode):04o}: others may read or change it"
        if problem:
            raise PlanKeyUnsafe(
                f"the plan key {path} {problem}; expected a file only you can read (0600); "
                f"if you trust its content, `chmod 600 {path}`, else remove it (saved plans then "
                "need remaking); nothing was changed"
            )
        key = os.read(fd, KEY_BYTES + 1)
    finally:
        os.close(fd)
    if len(key) != KEY_BYTES:
        raise PlanKeyUnsafe(
            f"the plan key {path} holds {len(key)} bytes, expected {KEY_BYTES}; remove it and make "
            "the plan again"
        )
    return key


def _canonical(body: Any) -> bytes:
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def _mac(key: bytes, body: Any) -> str:
    return hmac.new(key, FORMAT.encode() + b"\n" + _canonical(body), hashlib.sha256).hexdigest()


def seal_plan(plan: Plan, key: bytes) -> dict[str, Any]:
    """The JSON to save: {"format", "version", "plan", "mac"}."""
    body = plan.to_json()
    return {"format": FORMAT, "version": FORMAT_VERSION, "plan": body, "mac": _mac(key, body)}


def open_plan(data: Any, key: bytes, source: str = "the plan file") -> Plan:
    """The Plan inside a sealed plan, after checking its seal; PlanRefused when anything is off."""
    remake = "make a new one with `tamer plan -o FILE` on this host; nothing was removed"
    if not isinstance(data, dict) or data.get("format") != FORMAT or "plan" not in data:
        raise PlanRefused(
            f"{source} is not a plan saved by `tamer plan -o` (expected a JSON object with "
            f"format {FORMAT!r}); {remake}"
        )
    mac = data.get("mac")
    if not isinstance(mac, str) or not mac:
        raise PlanRefused(
            f'{source} carries no seal (its "mac" is missing): it was not written by '
            f"`tamer plan -o` here, or was edited; {remake}"
        )
    if not hmac.compare_digest(mac, _mac(key, data["plan"])):
        raise PlanRefused(
            f"{source} was edited or made elsewhere: its seal does not match its content "
            f"(expected a plan saved unchanged by `tamer plan -o` on this host); {remake}"
        )
    try:
        return Plan.from_json(data["plan"])
    except (KeyError, TypeError, ValueError) as exc:
        raise PlanRefused(
            f"{source} is sealed but not a plan this tamer can read ({exc}); {remake}"
        ) from None
