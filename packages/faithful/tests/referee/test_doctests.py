"""The examples in the referee's docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "faithful.referee.audit",
    "faithful.referee.settings",
    "faithful.referee.conformance",
    "faithful.referee.speculation",
    "faithful.fidelity.parallel",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
    assert result.attempted > 0
