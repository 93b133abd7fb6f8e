"""Human units for bytes and ages."""

from __future__ import annotations

from tamer.datetimes import datetime, timedelta
from tamer.errors import UsageError
from tamer.patterns import LazyPattern

_UNITS = ("B", "kB", "MB", "GB", "TB", "PB")


def human_bytes(n: int | None) -> str:
    """Decimal units, as `docker system df` prints them: 1.98MB, 12.3GB.

    >>> human_bytes(1982298)
    '1.98MB'
    """
    if n is None:
        return "?"
    value = float(n)
    for unit in _UNITS:
        if abs(value) < 1000 or unit == _UNITS[-1]:
            if unit == "B":
                return f"{int(value)}B"
            return f"{value:.3g}{unit}" if value < 100 else f"{value:.0f}{unit}"
        value /= 1000
    return f"{n}B"


def human_age(then: datetime | None, now: datetime) -> str:
    if then is None:
        return "-"
    seconds = (now - then).total_seconds()
    for limit, div, unit in ((120, 1, "s"), (7200, 60, "m"), (172800, 3600, "h"), (float("inf"), 86400, "d")):
        if seconds < limit:
            return f"{max(0, int(seconds // div))}{unit}"
    return "-"


_DURATION = LazyPattern(r"^(\d+(?:\.\d+)?)([smhdw])$")
_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
MAX_DURATION = timedelta(days=100 * 366)  # past this it is a typo (and timedelta overflows at 999999999 days)


def parse_duration(text: str) -> timedelta:
    """ "30d", "12h", "2w", "90m", "45s" -> timedelta; anything else is a UsageError.

    >>> parse_duration("7d")
    datetime.timedelta(days=7)
    """
    match = _DURATION.match(text.strip())
    shown = text if len(text) <= 40 else text[:37] + "..."
    if not match:
        raise UsageError(
            f"bad duration {shown!r}: expected a number and a unit s, m, h, d or w, e.g. 7d or 12h"
        )
    seconds = float(match.group(1)) * _SECONDS[match.group(2)]
    if not seconds <= MAX_DURATION.total_seconds():  # also inf, from a huge digit string
        raise UsageError(f"duration {shown!r} is too long: expected at most {MAX_DURATION.days}d (a century)")
    return timedelta(seconds=seconds)
