"""Shared pieces of the processors: validation, softmax, the Processor base."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from faithful.errors import EmptySupportError, InvalidLogitsError, SamplingParameterError, ShapeMismatchError
from faithful.selection import (
    check_row_max,
)

History = Sequence[Sequence[int]]


# ---------------------------------------------------------------- validation


def _param_error(name: str, expected: str, got: object) -> SamplingParameterError:
    return SamplingParameterError(f"`{name}` must be {expected}, got {got!r}")


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _param_error(name, "a real number", value)
    return float(value)


def _in_range(name: str, value: object, lo: float, hi: float, *, lo_open: bool, hi_open: bool) -> float:
    v = _real(name, value)
    ok = (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
    if not ok or math.isnan(v):
        interval = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise _param_error(name, f"in {interval}", value)
    return v


def check_logits(logits: object) -> np.ndarray:
    """Validate logits and return them as float64 ``(B, V)`` (a copy when the dtype changes).

    Parameters:
        logits: array-like of real numbers, shape ``(B, V)`` with ``V >= 1``.

    Returns:
        float64 array; the caller's array is never written to.

    Raises:
        InvalidLogitsError: not 2-D real numbers, or NaN / ``+inf`` present.
        EmptySupportError: a row is entirely ``-inf``.

    Example:
        >>> check_logits([[0.0, -np.inf]]).dtype.name
        'float64'
    """
    arr = np.asarray(logits)
    if arr.dtype.kind not in "fiu":
        raise InvalidLogitsError(f"logits must be real numbers, got dtype {arr.dtype}")
    if arr.ndim != 2 or arr.shape[1] < 1:
        hint = "; for one row use logits[None, :]" if arr.ndim == 1 else ""
        raise InvalidLogitsError(f"logits must have shape (batch, vocab) with vocab >= 1, got {arr.shape}{hint}")
    z = arr.astype(np.float64, copy=False)
    if z.size == 0:
        return z
    check_row_max(z.max(axis=1))  # NaN and +inf propagate into the max: one pass checks all
    return z


def _check_nonempty(z: np.ndarray, what: str) -> None:
    if not z.size:
        return
    top = z.max(axis=1)  # NaN and +inf propagate into the max, so one reduction checks all three
    if (bad := np.isnan(top) | (top == np.inf)).any():
        rows = np.flatnonzero(bad)[:10].tolist()
        raise InvalidLogitsError(
            f"rows {rows} hold NaN or +inf after {what} (an overflow, e.g. a huge logit_bias); "
            "keep logits and biases within float64 range"
        )
    if (empty := top == -np.inf).any():
        rows = np.flatnonzero(empty)[:10].tolist()
        raise EmptySupportError(
            f"rows {rows} have no token left after {what}; relax the mask or constraint for those rows"
        )


def _history_matrix(history: History | None, shape: tuple[int, int], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Flatten history into (row index, token) arrays, validating ids."""
    b, v = shape
    if history is None:
        raise SamplingParameterError(f"`{name}` needs `history` (the tokens generated so far per row)")
    if len(history) != b:
        raise ShapeMismatchError(f"`history` must have one sequence per row ({b}), got {len(history)}")
    lengths = [len(h) for h in history]
    rows = np.repeat(np.arange(b), lengths)
    tokens = np.fromiter((int(t) for h in history for t in h), dtype=np.int64, count=sum(lengths))
    if tokens.size and (tokens.min() < 0 or tokens.max() >= v):
        raise ShapeMismatchError(f"`history` holds token ids outside [0, {v}); ids must index the vocabulary")
    return rows, tokens


def _token_ids(name: str, tokens: Sequence[int] | np.ndarray) -> np.ndarray:
    ids = np.asarray(tokens)
    if ids.ndim != 1 or (ids.size and ids.dtype.kind not in "iu"):
        raise _param_error(name, "a 1-D sequence of int token ids", tokens)
    return ids.astype(np.int64)


def _check_ids_in_vocab(name: str, ids: np.ndarray, v: int) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= v):
        raise ShapeMismatchError(f"`{name}` holds token ids outside [0, {v}) for a vocabulary of {v}")


# ---------------------------------------------------------------- softmax


def log_softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise log-softmax in float64; ``-inf`` stays ``-inf``. ``z``: ``(B, V)``, no empty rows."""
    m = z.max(axis=1, keepdims=True)
    s = z - m
    return s - np.log(np.exp(s).sum(axis=1, keepdims=True))


def softmax(z: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (exactly 0 for ``-inf``). ``z``: ``(B, V)``, no empty rows."""
    w = np.exp(z - z.max(axis=1, keepdims=True))
    return w / w.sum(axis=1, keepdims=True)


def _entropy(logp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Row entropy in nats, ``(B, 1)``; removed tokens (``p = 0``) contribute 0."""
    return -(p * np.where(p > 0, logp, 0.0)).sum(axis=1, keepdims=True)


def _keep(z: np.ndarray, keep: np.ndarray) -> np.ndarray:
    return np.where(keep, z, -np.inf)


# ---------------------------------------------------------------- processors


class Processor:
    """Base of all processors: ``processor(logits, history) -> new logits``.

    Subclasses are frozen dataclasses; ``name`` is the keyword of
    :func:`faithful.samplers.make_sampler` that builds them.
    """

    name: ClassVar[str] = "processor"
    needs_history: ClassVar[bool] = False

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        raise NotImplementedError
