"""json.loads without importing the json package.

`json` imports `re` (its decoder keeps two patterns), and `re` costs about 5 ms to import with
`enum` and the regex compiler: a quarter of a `docker images`, paid by every `tamer ls` for answers
the C scanner in `_json` parses on its own. loads() here drives that scanner directly, as
json.JSONDecoder does, and falls back to json.loads for anything it does not accept, so every
error (and every document the scanner would read differently) is json's own: a unit test compares
the two on hostile documents.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Callable
    from typing import Any

_WHITESPACE = " \t\n\r"  # JSON's four (json.decoder's WHITESPACE pattern)


class _Context:
    """The attributes _json.make_scanner reads from a JSONDecoder, with json.loads' defaults."""

    strict = True
    object_hook = None
    object_pairs_hook = None
    parse_float = float
    parse_int = int

    def __init__(self) -> None:
        constants = {"-Infinity": float("-inf"), "Infinity": float("inf"), "NaN": float("nan")}
        self.parse_constant = constants.__getitem__


_scan: Callable[[str, int], tuple[Any, int]] | None = None


def _scanner() -> Callable[[str, int], tuple[Any, int]] | None:
    global _scan
    if _scan is None:
        try:
            from _json import make_scanner

            _scan = make_scanner(_Context())  # type: ignore[arg-type]  # it reads a decoder's attributes
        except Exception:  # no C accelerator (or one that wants more): json.loads does it all
            return None
    return _scan


def loads(data: bytes | str) -> Any:
    """json.loads(data): the same value, or the same exception (raised by json.loads itself)."""
    scan = _scanner()
    if scan is not None:
        try:
            text = data.decode("utf-8", "surrogatepass") if isinstance(data, bytes | bytearray) else data
            start = len(text) - len(text.lstrip(_WHITESPACE))
            if text and text[0] != "\ufeff":  # a BOM is json's error to report
                value, end = scan(text, start)
                if not text[end:].strip(_WHITESPACE):
                    return value
        except (StopIteration, ValueError, TypeError, AttributeError):
            pass  # malformed: json.loads below says how, in its own words
    import json

    return json.loads(data)
