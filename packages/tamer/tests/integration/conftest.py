from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def eng(test_engine: Any) -> Iterator[Any]:
    """The session's engine, with everything a test creates removed afterwards."""
    before_c = set(test_engine.docker("ps", "-aq", "--no-trunc").split())
    before_v = set(test_engine.docker("volume", "ls", "-q").split())
    before_i = set(test_engine.docker("images", "-aq", "--no-trunc").split())
    yield test_engine
    after_c = set(test_engine.docker("ps", "-aq", "--no-trunc").split()) - before_c
    if after_c:
        test_engine.docker("rm", "-f", "-v", *after_c, check=False)
    after_v = set(test_engine.docker("volume", "ls", "-q").split()) - before_v
    if after_v:
        test_engine.docker("volume", "rm", "-f", *after_v, check=False)
    after_i = set(test_engine.docker("images", "-aq", "--no-trunc").split()) - before_i
    if after_i:
        test_engine.docker("rmi", "-f", *after_i, check=False)
