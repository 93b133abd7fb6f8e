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
from typing import Any, Protocol, runtime_checkable

import numpy as np

from faithful.errors import SamplingParameterError, ShapeMismatchError

__all__ = [
    "KeyedRNG",
    "RngLike",
    "UniformSource",
    "as_keyed_rng",
    "bits_to_uniform",
    "resolve_rng",
    "splitmix64",
]

_MASK64 = (1 << 64) - 1
_GOLDEN = np.uint64(0x9E3779B97F4A7C15)
_M1 = np.uint64(0xBF58476D1CE4E5B9)
_M2 = np.uint64(0x94D049BB133111EB)
_S30, _S27, _S31, _S12 = np.uint64(30), np.uint64(27), np.uint64(31), np.uint64(12)
# The top 52 bits k map to (k + 0.5) * 2**-52. k + 0.5 needs 53 significant bits, which a
# float64 holds exactly, and the scaling is a power of two, so the result is exact: the
# smallest value is 2**-53, the largest 1 - 2**-53. (With 53 bits, (2**53 - 1 + 0.5) * 2**-53
# rounds to exactly 1.0, and a Gumbel draw at u = 1 picks a -inf token.)
_TWO_M52 = 2.0**-52


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
    z: np.ndarray = x ^ (x >> _S30)
    z = z * _M1
    z ^= z >> _S27
    z *= _M2
    z ^= z >> _S31
    return z


def bits_to_uniform(bits: np.ndarray) -> np.ndarray:
    """Map 64-bit generator outputs to uniforms in the open interval (0, 1), exactly.

    ``u = ((bits >> 12) + 0.5) * 2**-52``: the top 52 bits pick one of 2**52 equally
    likely midpoints. Every step is exact in float64 (no rounding anywhere), so a
    compiled kernel reproduces it bit for bit by the same formula, and
    ``2**-53 <= u <= 1 - 2**-53`` for every input, including 0 and ``2**64 - 1``.

    Parameters:
        bits: ``uint64`` array of any shape (e.g. :func:`splitmix64` outputs).

    Returns:
        float64 array of the same shape.

    Example:
        >>> ends = bits_to_uniform(np.array([0, 2**64 - 1], dtype=np.uint64))
        >>> bool(ends[0] == 2.0**-53 and ends[1] == 1 - 2.0**-53)
        True
    """
    return ((np.asarray(bits, dtype=np.uint64) >> _S12).astype(np.float64) + 0.5) * _TWO_M52


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
            ``(seed, rows[i], step, j)``, with 52 random bits
            (:func:`bits_to_uniform`), so ``2**-53 <= u <= 1 - 2**-53``.

        Raises:
            ShapeMismatchError: ``rows`` is not one-dimensional.
            SamplingParameterError: ``n`` is negative or not an int; ``step`` is not an int.

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
        if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
            raise SamplingParameterError(f"`n` must be a non-negative int, got {n!r}")
        if isinstance(step, bool) or not isinstance(step, int | np.integer):  # "x" or 1.5: never int()-ed
            raise SamplingParameterError(f"`step` must be an int (the decoding step), got {step!r}")
        keys = self._row_keys(rows_arr, step)
        lanes = np.arange(int(n), dtype=np.uint64) + _GOLDEN
        bits = splitmix64(keys[:, None] ^ lanes[None, :])
        return bits_to_uniform(bits)


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


@runtime_checkable
class UniformSource(Protocol):
    """Counter-based uniforms: ``uniforms(rows, step, n)`` depends only on ``(seed, row, step, lane)``.

    :class:`KeyedRNG` is one; a test may pass any object with this method (e.g. one that
    returns boundary values) to every sampler and decoder.
    """

    def uniforms(self, rows: np.ndarray | Sequence[int], step: int, n: int = 1) -> np.ndarray: ...


def resolve_rng(rng: Any) -> UniformSource:
    """The one place an ``rng`` argument becomes a source of keyed uniforms.

    Parameters:
        rng: an int seed, a :class:`KeyedRNG`, None (a fresh seed from OS entropy), or
            any object with a callable ``uniforms(rows, step, n)`` method, used as is.

    Returns:
        The uniform source. Its seed, where it has one, is ``getattr(source, "seed", None)``
        (for ``rng=None`` that is the fresh seed, to reproduce the run).

    Raises:
        SamplingParameterError: ``rng`` is of another kind (e.g. ``np.random.Generator`` or a bool).

    Example:
        >>> resolve_rng(3) == KeyedRNG(3)
        True
    """
    if (
        rng is not None
        and not isinstance(rng, int | np.integer | KeyedRNG)
        and callable(getattr(rng, "uniforms", None))
    ):
        source: UniformSource = rng
        return source
    return as_keyed_rng(rng)
