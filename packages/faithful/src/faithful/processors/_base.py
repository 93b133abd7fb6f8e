"""Shared pieces of the processors: validation, softmax, the Processor base."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import ClassVar

import numpy as np

from faithful._numeric import check_row_max, log_softmax, softmax
from faithful.errors import InvalidLogitsError, SamplingParameterError, ShapeMismatchError

History = Sequence[Sequence[int]]


# ---------------------------------------------------------------- validation


def _param_error(name: str, expected: str, got: object) -> SamplingParameterError:
    return SamplingParameterError(f"`{name}` must be {expected}, got {got!r}")


def _real(name: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float | np.integer | np.floating):
        raise _param_error(name, "a real number", value)
    return float(value)


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
        raise InvalidLogitsError(
            f"logits must have shape (batch, vocab) with vocab >= 1, got {arr.shape}{hint}"
        )
    z = arr.astype(np.float64, copy=False)
    if z.size == 0:
        return z
    check_row_max(z.max(axis=1))  # NaN and +inf propagate into the max: one pass checks all
    return z


def _check_nonempty(z: np.ndarray, what: str) -> None:
    if z.size:
        check_row_max(z.max(axis=1), after=what)


def _history_matrix(
    history: History | None, shape: tuple[int, int], name: str
) -> tuple[np.ndarray, np.ndarray]:
    """Flatten history into (row index, token) arrays, validating ids."""
    b, v = shape
    if history is None:
        raise SamplingParameterError(f"`{name}` needs `history` (the tokens generated so far per row)")
    if len(history) != b:
        raise ShapeMismatchError(f"`history` must have one sequence per row ({b}), got {len(history)}")
    lengths = [len(h) for h in history]
    rows = np.repeat(np.arange(b), lengths)
    try:
        # operator.index, not int(): a float id (1.5) was truncated to token 1 and penalised silently
        tokens = np.fromiter(
            (operator.index(t) for h in history for t in h), dtype=np.int64, count=sum(lengths)
        )
    except TypeError:
        raise ShapeMismatchError("`history` must hold int token ids (one sequence of ints per row)") from None
    if tokens.size and (tokens.min() < 0 or tokens.max() >= v):
        raise ShapeMismatchError(f"`history` holds token ids outside [0, {v}); ids must index the vocabulary")
    return rows, tokens


def _check_ids_in_vocab(name: str, ids: np.ndarray, v: int) -> None:
    if ids.size and (ids.min() < 0 or ids.max() >= v):
        raise ShapeMismatchError(f"`{name}` holds token ids outside [0, {v}) for a vocabulary of {v}")


# ---------------------------------------------------------------- softmax (faithful._numeric)

__all__ = ["History", "Processor", "check_logits", "log_softmax", "softmax"]


def _entropy(logp: np.ndarray, p: np.ndarray) -> np.ndarray:
    """Row entropy in nats, ``(B, 1)``; removed tokens (``p = 0``) contribute 0."""
    h: np.ndarray = -(p * np.where(p > 0, logp, 0.0)).sum(axis=1, keepdims=True)
    return h


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
    # A stochastic processor (XTC) takes ``rng``, ``rows``, ``step`` and ``lane`` keywords too;
    # the sampler passes it the keyed source it draws with.
    stochastic: ClassVar[bool] = False

    def __post_init__(self) -> None:
        # every parameter is checked (and normalised) by the one processor table
        from faithful.processors.table import validate_fields

        validate_fields(self)

    def __call__(self, logits: np.ndarray, history: History | None = None) -> np.ndarray:
        raise NotImplementedError
