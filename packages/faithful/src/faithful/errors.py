"""The one exception hierarchy of faithful."""

from __future__ import annotations


class FaithfulError(Exception):
    """Base of every error faithful raises on purpose.

    Messages say what was wrong, what was expected and what to do, e.g.
    "`top_p` must be in (0, 1], got 1.5".
    """


class SamplingParameterError(FaithfulError, ValueError):
    """A sampler or processor parameter is out of range or of the wrong kind.

    Example message: "`top_p` must be in (0, 1], got 1.5".
    """


class InvalidLogitsError(FaithfulError, ValueError):
    """Logits contain NaN or +inf, or are not a floating 2-D (batch, vocab) array."""


class ShapeMismatchError(FaithfulError, ValueError):
    """Two inputs that must agree in shape (logits, rows, history, uniforms) do not."""


class EmptySupportError(FaithfulError, ValueError):
    """After processing, a row has no token left with positive probability."""
