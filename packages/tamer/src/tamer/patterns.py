"""Regular expressions compiled on first use.

Importing `re` (with `enum`, `functools` and the regex compiler) costs about 5 ms, a quarter of a
`docker images`; the lean listings (tamer.cli.lean) must not pay it for a pattern they never use,
such as a duration's, which only a filter needs. A module that keeps a pattern at module level
keeps a LazyPattern instead: `re` is imported, and the pattern compiled, the first time it matches.
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    import re
    from collections.abc import Callable


class LazyPattern:
    """re.compile(pattern, flags), postponed until the first match, sub or fullmatch."""

    __slots__ = ("_compiled", "flags", "pattern")

    def __init__(self, pattern: str, flags: int = 0) -> None:
        self.pattern = pattern
        self.flags = flags
        self._compiled: re.Pattern[str] | None = None

    def compiled(self) -> re.Pattern[str]:
        if self._compiled is None:
            import re

            self._compiled = re.compile(self.pattern, self.flags)
        return self._compiled

    def match(self, text: str) -> re.Match[str] | None:
        return self.compiled().match(text)

    def fullmatch(self, text: str) -> re.Match[str] | None:
        return self.compiled().fullmatch(text)

    def search(self, text: str) -> re.Match[str] | None:
        return self.compiled().search(text)

    def sub(self, repl: str | Callable[[re.Match[str]], str], text: str) -> str:
        return self.compiled().sub(repl, text)
