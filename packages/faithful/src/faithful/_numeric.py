"""The numeric pieces every part of faithful shares: one log-softmax, one row validator.

Kept free of faithful imports beyond :mod:`faithful.errors`, so the reference
processors, the selection kernels, mirostat, the models and the decoders can all
use them without import cycles.
"""

from __future__ import annotations

import numpy as np

from faithful.errors import EmptySupportError, InvalidLogitsError

__all__ = ["check_row_max", "log_softmax", "softmax"]


def log_softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Log-softmax in float64 along ``axis``; ``-inf`` stays ``-inf``.

    The maximum is subtracted first (``log_softmax(z) = (z - m) - log sum exp(z - m)``);
    a slice that is entirely ``-inf`` stays ``-inf`` (no NaN, no warning).

    Parameters:
        z: real array of any shape (float32 is computed in float64).
        axis: the axis to normalise over.

    Returns:
        float64 array of ``z``'s shape whose ``exp`` sums to 1 along ``axis``
        (except all ``-inf`` slices).

    Example:
        >>> np.exp(log_softmax(np.array([[0.0, 0.0], [0.0, -np.inf]]))).tolist()
        [[0.5, 0.5], [1.0, 0.0]]
        >>> log_softmax(np.array([[-np.inf, -np.inf]])).tolist()
        [[-inf, -inf]]
    """
    x = np.asarray(z, dtype=np.float64)
    m = np.max(x, axis=axis, keepdims=True)
    m = np.where(np.isfinite(m), m, 0.0)
    s = x - m
    with np.errstate(divide="ignore", invalid="ignore"):
        lse = np.log(np.exp(s).sum(axis=axis, keepdims=True))
        # an all -inf slice has lse = -inf, and -inf - -inf is NaN: keep it -inf, as documented
        out: np.ndarray = np.where(lse == -np.inf, -np.inf, s - lse)
    return out


def softmax(z: np.ndarray, axis: int = -1) -> np.ndarray:
    """Softmax in float64 along ``axis`` (exactly 0 for ``-inf``); every slice needs a finite entry.

    Example:
        >>> softmax(np.array([[0.0, -np.inf]])).tolist()
        [[1.0, 0.0]]
    """
    x = np.asarray(z, dtype=np.float64)
    w = np.exp(x - x.max(axis=axis, keepdims=True))
    q: np.ndarray = w / w.sum(axis=axis, keepdims=True)
    return q


def check_row_max(top: np.ndarray, after: str | None = None) -> None:
    """The one validator of logits rows, from their maxima (NaN and +inf propagate into a max).

    Parameters:
        top: ``(B,)`` row maxima.
        after: None when checking the input logits; otherwise what ran before the
            check (``"logit_bias"``), named in the message.

    Raises:
        InvalidLogitsError: a row holds NaN or +inf.
        EmptySupportError: a row is entirely ``-inf`` (no token left).

    Example:
        >>> check_row_max(np.array([0.0, 3.0]))
        >>> check_row_max(np.array([-np.inf]), after="top_k")
        Traceback (most recent call last):
        ...
        faithful.errors.EmptySupportError: rows [0] have no token left after top_k; relax the mask or constraint for those rows
    """
    if (bad := np.isnan(top) | (top == np.inf)).any():
        rows = np.flatnonzero(bad)[:10].tolist()
        if after is None:
            raise InvalidLogitsError(
                f"logits contain NaN or +inf in rows {rows}; fix the model output "
                "(use -inf, not NaN or +inf, to remove a token)"
            )
        raise InvalidLogitsError(
            f"rows {rows} hold NaN or +inf after {after} (an overflow, e.g. a huge logit_bias); "
            "keep logits and biases within float64 range"
        )
    if (empty := top == -np.inf).any():
        rows = np.flatnonzero(empty)[:10].tolist()
        raise EmptySupportError(
            f"rows {rows} have no token left after {after or 'the input logits'}; "
            "relax the mask or constraint for those rows"
        )
