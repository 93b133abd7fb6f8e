"""Keyed, counter-based randomness: (seed, row, step, lane) -> a uniform in (0, 1).

Every uniform is a pure function of its key, computed with splitmix64 mixing in
wrapping ``uint64`` numpy arithmetic. Nothing is consumed from a stream, so a
row's draws are the same whether it is sampled alone or inside a batch of 512,
in any order, on numpy or on torch (the torch backend moves these very numbers
to its device).

Example:
    >>> rng = KeyedRNG(seed=7)
    >>> u = rng.uniforms([0, 5], step=3, n=2)
    >>> u.shape
    (2, 2)
    >>> bool(((u > 0) & (u < 1)).all())
    True
    >>> bool((rng.uniforms([5], step=3, n=2)[0] == u[1]).all())
    True
"""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faithful.errors import SamplingParameterError, ShapeMismatchError

__all__ = ["KeyedRNG", "RngLike", "as_keyed_rng", "splitmix64"]

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S11 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(11)
# 53-bit integer k maps to (k + 0.5) / 2**53: never 0, never 1.
_TWO_M53 = 2.0**-53


def splitmix64(x: np.ndarray) -> np.ndarray:
    """The splitmix64 finaliser, elementwise on a ``uint64`` array (wrapping arithmetic).

    Parameters:
        x: ``uint64`` array of any shape.

    Returns:
        A new ``uint64`` array of the same shape; ``x`` is not modified.

    Example:
        >>> int(splitmix64(np.array([0], dtype=np.uint64))[0])
        0
    """
    z = x ^ (x >> _S30)
    z = z * _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def _as_u64(values: np.ndarray) -> np.ndarray:
    """Reinterpret integers as uint64 (two's complement for negatives)."""
    return values.astype(np.int64, copy=False).view(np.uint64)


@dataclass(frozen=True)
class KeyedRNG:
    """A seed; uniforms are a pure function of (seed, row, step, lane).

    Attributes:
        seed: any Python int (reduced modulo 2**64).

    Example:
        >>> KeyedRNG(1).uniforms([0], step=0).shape
        (1, 1)
    """

    seed: int

    def __post_init__(self) -> None:
        if isinstance(self.seed, bool) or not isinstance(self.seed, int | np.integer):
            raise SamplingParameterError(
                f"`seed` must be an int, got {type(self.seed).__name__}; pass e.g. KeyedRNG(0)"
            )

    def _row_keys(self, rows: np.ndarray, step: int) -> np.ndarray:
        seed_key = np.array([int(self.seed) & _MASK64], dtype=np.uint64)
        h = splitmix64(seed_key + _GOLDEN)
        h = splitmix64(h ^ (_as_u64(rows) + _GOLDEN))
        step_key = np.array([int(step) & _MASK64], dtype=np.uint64)
        return splitmix64(h ^ (step_key + _GOLDEN))

    def uniforms(self, rows: np.ndarray | Sequence[int], step: int, n: int = 1) -> np.ndarray:
        """Uniforms in the open interval (0, 1) for each row and lane.

        Parameters:
            rows: global row ids, shape ``(R,)``; any integers (negative allowed).
            step: the decoding step (an int).
            n: lanes per row (e.g. 1 for inverse CDF, vocab size for Gumbel-max).

        Returns:
            float64 array of shape ``(R, n)``; entry ``[i, j]`` depends only on
            ``(seed, rows[i], step, j)``, with 53 random bits.

        Raises:
            ShapeMismatchError: ``rows`` is not one-dimensional.
            SamplingParameterError: ``n`` is negative.

        Example:
            >>> u = KeyedRNG(0).uniforms(np.arange(3), step=1, n=4)
            >>> u.shape, u.dtype.name
            ((3, 4), 'float64')
        """
        rows_arr = np.asarray(rows)
        if rows_arr.ndim != 1:
            raise ShapeMismatchError(f"`rows` must be one-dimensional (R,), got shape {rows_arr.shape}")
        if rows_arr.size and not np.issubdtype(rows_arr.dtype, np.integer):
            raise ShapeMismatchError(f"`rows` must hold integers, got dtype {rows_arr.dtype}")
        if isinstance(n, bool) or int(n) != n or n < 0:
            raise SamplingParameterError(f"`n` must be a non-negative int, got {n!r}")
        keys = self._row_keys(rows_arr, step)
        lanes = np.arange(int(n), dtype=np.uint64) + _GOLDEN
        bits = splitmix64(keys[:, None] ^ lanes[None, :])
        return ((bits >> _S11).astype(np.float64) + 0.5) * _TWO_M53


RngLike = int | KeyedRNG | None


def as_keyed_rng(rng: RngLike) -> KeyedRNG:
    """Normalise an ``rng`` argument.

    Parameters:
        rng: an int seed, a :class:`KeyedRNG`, or None for a fresh seed from OS
            entropy (read ``.seed`` of the result to reproduce the run).

    Returns:
        A :class:`KeyedRNG`.

    Raises:
        SamplingParameterError: ``rng`` is of another type (e.g. ``np.random.Generator``).

    Example:
        >>> as_keyed_rng(3).seed
        3
    """
    if rng is None:
        return KeyedRNG(secrets.randbits(63))
    if isinstance(rng, KeyedRNG):
        return rng
    if isinstance(rng, int | np.integer) and not isinstance(rng, bool):
        return KeyedRNG(int(rng))
    raise SamplingParameterError(
        f"`rng` must be an int seed, a faithful.rng.KeyedRNG or None, got {type(rng).__name__}; "
        "global or stream generators are not accepted because they make draws depend on the batch"
    )
