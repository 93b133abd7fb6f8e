"""The examples in the docstrings are true."""

from __future__ import annotations

import doctest
import importlib

import pytest

MODULES = [
    "faithful.rng",
    "faithful.draw",
    "faithful.processors",
    "faithful.processors.truncation",
    "faithful.processors.history",
    "faithful.processors.dry",
    "faithful.processors.xtc",
    "faithful.processors.table",
    "faithful.processors._params",
    "faithful._numeric",
    "faithful.samplers",
    "faithful.mirostat",
    "faithful.selection",
    "faithful.tensors",
]


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples(name: str) -> None:
    if name.endswith("tensors"):
        pytest.importorskip("torch")
    module = importlib.import_module(name)
    result = doctest.testmod(module, optionflags=doctest.NORMALIZE_WHITESPACE)
    assert result.failed == 0, f"{result.failed} docstring example(s) failed in {name}"
    assert result.attempted > 0
