"""facts.parse_time on times the engine can send and datetime cannot hold (session 8).

Go's times run from year 0 to 9999 (and an image's config says what its maker wrote); datetime's from
year 1. Each such time is unknown (None), never an exception that ends the command: see
tests/integration/test_attack_s8_read_times.py for the image that does it on a real engine.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from tamer.facts import parse_time


@pytest.mark.parametrize(
    "value",
    [
        -62167219200,  # 0000-01-01T00:00:00Z as /images/json says it
        "0000-01-01T00:00:00Z",
        "0000-12-31T23:59:59.999999999-01:00",
        10**20,
        -(10**20),
        float("nan"),
        float("inf"),
        "2024-13-45T00:00:00Z",
        True,
    ],
    ids=repr,
)
def test_a_time_datetime_cannot_hold_is_unknown(value: Any) -> None:
    assert parse_time(value) is None


def test_the_times_it_can_hold_are_unchanged() -> None:
    assert parse_time(1_700_000_000) == datetime.fromtimestamp(1_700_000_000, tz=UTC)
    assert parse_time("2024-05-06T07:08:09.123456789Z") == datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
    late = parse_time("9999-12-31T23:59:59.999999999+14:00")
    assert late is not None and late.year == 9999
    assert parse_time(-62135596800) == datetime(1, 1, 1, tzinfo=UTC)  # year 1 is datetime's first
