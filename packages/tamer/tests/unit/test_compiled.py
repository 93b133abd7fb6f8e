"""tamer.compiled: one rule for the switches that force the Python references (TAMER_PURE_WALK, _TAP, _RESTORE).

Unset, empty or "0": the compiled extension is used where it was built; any other value forces Python.
Each of the three loaders is driven through the same values, so a loader with a rule of its own fails here.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import pytest
from tamer import compiled, treewalk
from tamer.volumes import archive, archive_tar
from tamer.volumes.archive_write import WriteStats

OFF: list[str | None] = [None, "", "0"]
# anything set and not "0" forces Python, even "false"
ON: list[str | None] = ["1", "yes", "true", "00", " 0", "false"]


@pytest.mark.parametrize("value", OFF + ON)
def test_the_rule(monkeypatch: pytest.MonkeyPatch, value: str | None) -> None:
    if value is None:
        monkeypatch.delenv("TAMER_TEST_SWITCH", raising=False)
    else:
        monkeypatch.setenv("TAMER_TEST_SWITCH", value)
    assert compiled.pure_forced("TAMER_TEST_SWITCH") is (value in ON)
    loaded = compiled.load("json", "TAMER_TEST_SWITCH")  # any importable module shows the rule
    assert (loaded is None) is (value in ON)
    if loaded is not None:
        assert loaded is sys.modules["json"]


def test_a_missing_module_is_none_and_no_switch_means_none_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    assert compiled.load("tamer._no_such_extension", None) is None
    monkeypatch.setitem(sys.modules, "tamer._ctap", None)  # as where it was never built
    assert compiled.load("tamer._ctap", None) is None
    monkeypatch.undo()
    monkeypatch.setenv("TAMER_TEST_SWITCH", "1")
    assert compiled.load("json", None) is sys.modules["json"]


def _walker() -> object:
    return treewalk.compiled_walker()


def _restore() -> object:
    return archive.compiled_restore()


def _tap() -> object:
    tap = archive_tar.new_tap(WriteStats(), {}, {})
    return None if isinstance(tap, archive_tar._TarTap) else tap


LOADERS: list[tuple[str, str, Callable[[], object]]] = [
    ("tamer._cwalk", "TAMER_PURE_WALK", _walker),
    ("tamer._crestore", "TAMER_PURE_RESTORE", _restore),
    ("tamer._ctap", "TAMER_PURE_TAP", _tap),
]


@pytest.mark.parametrize(("module", "switch", "loader"), LOADERS, ids=[m for m, _, _ in LOADERS])
@pytest.mark.parametrize("value", OFF + ON)
def test_every_loader_follows_the_rule(
    monkeypatch: pytest.MonkeyPatch, module: str, switch: str, loader: Callable[[], object], value: str | None
) -> None:
    pytest.importorskip(module, reason=f"{module} was not built here (no C compiler at install)")
    if value is None:
        monkeypatch.delenv(switch, raising=False)
    else:
        monkeypatch.setenv(switch, value)
    assert (loader() is None) is (value in ON)
    # and where it was never built: Python, whatever the switch
    monkeypatch.setitem(sys.modules, module, None)
    assert loader() is None
