"""The optional compiled extensions (_cwalk, _ctap, _crestore, _cpack): one loader and one rule for their switches.

Each extension has a Python reference that gives the same results; an environment variable forces
the reference. The rule, the same for every switch (TAMER_PURE_WALK, TAMER_PURE_TAP,
TAMER_PURE_RESTORE, TAMER_PURE_PACK): unset, empty or "0" lets the compiled module load; any other value
("1", "yes", ...) forces pure Python. A switch that reads "0" as "on" would surprise whoever
writes TAMER_PURE_TAP=0 to mean "not pure", so "0" is off everywhere.

setup.py builds each extension on its own (one that fails to compile leaves the others), and _ctap and
_crestore without the vendored BLAKE3 where it did not compile: they load as ever, and hash BLAKE3
through the blake3 package instead (the same digests); their `native_blake3` (0 or 1) says which build
this is, see native_blake3(). _cpack (the compiled backup writer) built without it is not offered:
`auto` writes with GNU tar or Python instead (tamer.volumes.archive_pack.packer_module).
"""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing itself costs 30 ms (it imports re); mypy reads this name as True
if TYPE_CHECKING:
    from types import ModuleType

# what a switch may hold and still leave the compiled module in use
_OFF = ("", "0")


def pure_forced(env_switch: str) -> bool:
    """Whether the environment variable `env_switch` forces the Python reference (set, and not "0").

    Example: with TAMER_PURE_TAP=1, pure_forced("TAMER_PURE_TAP") is True; with TAMER_PURE_TAP=0
    or unset it is False.
    """
    return os.environ.get(env_switch, "") not in _OFF


def load(module_name: str, env_switch: str | None) -> ModuleType | None:
    """The compiled module `module_name` (e.g. "tamer._ctap"), or None where `env_switch` forces pure
    Python (see pure_forced) or where the module was not built (no C compiler at install).
    env_switch None: no switch is consulted (a caller that was told explicitly which path to take).

    The switch is read at each call, not once: tests and callers may change it between calls.
    Any ImportError means "not usable here" (not built, or built against a library this host lacks):
    the Python reference gives the same results, so it is used instead, as where nothing was built.
    """
    if env_switch is not None and pure_forced(env_switch):
        return None
    try:
        __import__(module_name)  # not importlib: the lean start-up path does not load it
    except ImportError:
        return None
    return sys.modules[module_name]


def native_blake3(module: ModuleType | None) -> bool:
    """Whether the compiled `module` (_ctap or _crestore, as load() gives it) hashes BLAKE3 in its own C
    (the vendored BLAKE3 compiled), rather than through the blake3 package; False for None."""
    return bool(getattr(module, "native_blake3", 0))
