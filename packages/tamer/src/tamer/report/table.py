"""Plain-text tables that line up, for terminals and logs alike."""

from __future__ import annotations

from tamer.patterns import LazyPattern

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from collections.abc import Sequence

# Cells carry names and labels anyone who can start a container writes (a compose project label is an
# owner): a control character (ESC sequences recolour or rewrite the terminal, CR overwrites the line,
# NUL and newlines break the table) or a bidi override (text shown reordered) is shown as "?".
_UNSAFE = LazyPattern(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u202a-\u202e\u2066-\u2069]")


def safe_cell(text: str) -> str:
    """`text` with control characters and bidi overrides shown as '?'."""
    if text.isprintable():  # every character _UNSAFE matches is unprintable (Cc, Cf, Zl, Zp): nothing to do
        return text
    return _UNSAFE.sub("?", text)


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]], *, right: Sequence[int] = ()) -> str:
    """Columns padded to their widest cell; indices in `right` are right-aligned (numbers).

    Control characters and bidi overrides in cells are shown as '?' (safe_cell)."""
    headers = [safe_cell(h) for h in headers]
    rows = [[safe_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in rows:
        for i, cell in enumerate(row):
            widths[i] = max(widths[i], len(cell))

    def line(cells: Sequence[str]) -> str:
        parts = [c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)]
        return "  ".join(parts).rstrip()

    return "\n".join([line(headers), *(line(r) for r in rows)])
