"""The one exception hierarchy of faithful."""

from __future__ import annotations


class FaithfulError(Exception):
    """Base of every error faithful raises on purpose.

    Messages say what was wrong, what was expected and what to do, e.g.
    "`top_p` must be in (0, 1], got 1.5".
    """
