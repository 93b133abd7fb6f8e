"""datetime's classes, imported without the `datetime` module where CPython 3.11 lets us.

On 3.11, `import datetime` first defines the whole pure-Python implementation (and imports math and
operator for it), then replaces every class with the C one from `_datetime`: 1.7 ms measured, about 3%
of a `tamer ls volumes`, for classes that end up the very same objects. The lean listings
(tamer.cli.lean, quick_ls and what they import) take them from here; any other module may import
`datetime` as usual and gets the same classes (3.12 moved the pure-Python code out, so there this
saves nothing and costs nothing).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's: importing typing costs ~3 ms
if TYPE_CHECKING:
    from datetime import UTC, datetime, timedelta, timezone
else:
    try:
        from _datetime import UTC, datetime, timedelta, timezone
    except ImportError:  # an interpreter without the C module (PyPy)
        from datetime import UTC, datetime, timedelta, timezone

__all__ = ["UTC", "datetime", "timedelta", "timezone"]
