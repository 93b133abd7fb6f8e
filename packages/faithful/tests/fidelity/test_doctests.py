"""The examples in the fidelity docstrings run and say what they show."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "faithful.fidelity.stats",
    "faithful.fidelity.exact",
    "faithful.fidelity.diversity",
    "faithful.fidelity.surprisal",
    "faithful.fidelity.compare",
    "faithful.fidelity.coin",
    "faithful.fidelity.specs",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    result = doctest.testmod(importlib.import_module(name), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0
