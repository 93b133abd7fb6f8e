"""The keyed uniforms of :mod:`faithful.rng`, computed in torch on the tensor's own device.

:class:`faithful.rng.KeyedRNG` makes every uniform a pure function of
``(seed, row, step, lane)`` with splitmix64 in wrapping ``uint64`` numpy
arithmetic. This module computes the *same bits* with torch integer ops on any
device (CPU or CUDA), so a device-side sampler never copies uniforms from the
host and still draws exactly the numpy reference's token.

Why int64 and not ``torch.uint64``: torch's unsigned 64-bit dtype lacks
multiplication, shifts or xor on some devices and versions, while int64 has all
of them everywhere. Two's-complement int64 holds the same 64 bits as the uint64,
and the operations splitmix64 needs map over exactly:

- ``+`` and ``*`` keep the low 64 bits of the exact result in both readings
  (torch's integer kernels wrap on overflow, on CPU and CUDA alike);
- ``^`` is bitwise, so identical;
- the logical right shift ``x >>> k`` is the arithmetic shift ``x >> k`` with
  the ``k`` sign-extended top bits cleared: ``(x >> k) & (2**(64-k) - 1)``.

Constants above ``2**63`` are written as their int64 reinterpretation. The last
step (:func:`bits_to_uniform`) keeps the top 52 bits, a non-negative int64 below
``2**52`` that converts to float64 exactly, so the uniform is bit-identical to
numpy's (tested with ``==`` on CPU torch against :mod:`faithful.rng` over random and
boundary keys).

Example:
    >>> import numpy as np, torch
    >>> from faithful.rng import KeyedRNG
    >>> u = torch_uniforms(KeyedRNG(7), torch.tensor([0, 5]), step=3, n=2)
    >>> bool((u.numpy() == KeyedRNG(7).uniforms([0, 5], step=3, n=2)).all())
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from faithful.errors import SamplingParameterError, ShapeMismatchError
from faithful.rng import KeyedRNG, UniformSource, resolve_rng

__all__ = ["bits_to_uniform", "device_uniforms", "splitmix64", "to_int64", "torch_uniforms"]

_MASK64 = (1 << 64) - 1


def to_int64(value: int) -> int:
    """The int64 (two's complement) reading of ``value mod 2**64``.

    Example:
        >>> to_int64(2**64 - 1), to_int64(2**63), to_int64(-1)
        (-1, -9223372036854775808, -1)
    """
    v = int(value) & _MASK64
    return v - (1 << 64) if v >> 63 else v


_GOLDEN = to_int64(0x9E3779B97F4A7C15)
_M1 = to_int64(0xBF58476D1CE4E5B9)
_M2 = to_int64(0x94D049BB133111EB)
_TWO_M52 = 2.0**-52


def _shr(x: Any, k: int) -> Any:
    """Logical right shift of int64 ``x`` by ``0 < k < 64``: the arithmetic shift with the sign fill masked off."""
    return (x >> k) & ((1 << (64 - k)) - 1)


def splitmix64(x: Any) -> Any:
    """The splitmix64 finaliser on an int64 tensor holding uint64 bits (wrapping arithmetic).

    Parameters:
        x: ``torch.int64`` tensor of any shape, on any device.

    Returns:
        A new int64 tensor of the same shape and device whose bits equal
        :func:`faithful.rng.splitmix64` of ``x``'s bits read as uint64; ``x`` is not modified.

    Example:
        >>> import torch
        >>> splitmix64(torch.tensor([0])).tolist()
        [0]
    """
    z = x ^ _shr(x, 30)
    z = z * _M1
    z = z ^ _shr(z, 27)
    z = z * _M2
    return z ^ _shr(z, 31)


def bits_to_uniform(bits: Any) -> Any:
    """Map int64-held generator bits to float64 uniforms in (0, 1), exactly as :func:`faithful.rng.bits_to_uniform`.

    ``u = ((bits >>> 12) + 0.5) * 2**-52``; every step is exact in float64.

    Parameters:
        bits: ``torch.int64`` tensor (uint64 bits).

    Returns:
        float64 tensor of the same shape on the same device, ``2**-53 <= u <= 1 - 2**-53``.

    Example:
        >>> import torch
        >>> ends = bits_to_uniform(torch.tensor([0, -1]))
        >>> bool(ends[0] == 2.0**-53 and ends[1] == 1 - 2.0**-53)
        True
    """
    import torch

    return (_shr(bits, 12).to(torch.float64) + 0.5) * _TWO_M52


def _rows_tensor(rows: Any, device: Any) -> Any:
    import torch

    if isinstance(rows, torch.Tensor):
        if rows.ndim != 1:
            raise ShapeMismatchError(f"`rows` must be one-dimensional (R,), got shape {tuple(rows.shape)}")
        if rows.is_floating_point() or rows.is_complex() or rows.dtype == torch.bool:
            raise ShapeMismatchError(f"`rows` must hold integers, got dtype {rows.dtype}")
        return rows.to(device=rows.device if device is None else device, dtype=torch.int64)
    arr = np.asarray(rows)
    if arr.ndim != 1:
        raise ShapeMismatchError(f"`rows` must be one-dimensional (R,), got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ShapeMismatchError(f"`rows` must hold integers, got dtype {arr.dtype}")
    # as numpy reads them: astype(int64), so uint64 rows above 2**63 keep their bits
    return torch.from_numpy(arr.astype(np.int64)).to("cpu" if device is None else device)


def torch_uniforms(
    rng: KeyedRNG | int,
    rows: Any,
    step: int,
    n: int = 1,
    *,
    device: Any = None,
) -> Any:
    """Keyed uniforms computed with torch integer ops, bit-identical to ``KeyedRNG(seed).uniforms``.

    Parameters:
        rng: a :class:`~faithful.rng.KeyedRNG` or an int seed (any Python int, reduced modulo 2**64).
        rows: global row ids ``(R,)``: a torch integer tensor (used on its device) or a sequence
            / numpy array of ints.
        step: the decoding step (an int; reduced modulo 2**64 like the numpy generator).
        n: lanes per row (1 for inverse CDF, the vocabulary size for Gumbel-max).
        device: where to compute; default ``rows``'s device (CPU for non-tensors).

    Returns:
        float64 tensor ``(R, n)`` on ``device``; entry ``[i, j]`` equals
        ``KeyedRNG(seed).uniforms(rows, step, n)[i, j]`` bit for bit.

    Raises:
        ShapeMismatchError: ``rows`` is not one-dimensional or not integers.
        SamplingParameterError: ``n`` negative or not an int; ``step`` or the seed not an int.

    Example:
        >>> import torch
        >>> torch_uniforms(0, torch.arange(3), step=1, n=4).shape
        torch.Size([3, 4])
    """
    import torch

    keyed = rng if isinstance(rng, KeyedRNG) else KeyedRNG(rng)  # KeyedRNG validates the seed
    if isinstance(n, bool) or not isinstance(n, int | np.integer) or n < 0:
        raise SamplingParameterError(f"`n` must be a non-negative int, got {n!r}")
    if isinstance(step, bool) or not isinstance(step, int | np.integer):
        raise SamplingParameterError(f"`step` must be an int (the decoding step), got {step!r}")
    r = _rows_tensor(rows, device)
    # the per-call scalars are folded on the host in exact Python ints (no tensor needed for them)
    seed_hash = _splitmix64_int((int(keyed.seed) + 0x9E3779B97F4A7C15) & _MASK64)
    h = splitmix64((r + _GOLDEN) ^ to_int64(seed_hash))
    keys = splitmix64(h ^ to_int64((int(step) + 0x9E3779B97F4A7C15) & _MASK64))
    lanes = torch.arange(int(n), dtype=torch.int64, device=r.device) + _GOLDEN
    return bits_to_uniform(splitmix64(keys[:, None] ^ lanes[None, :]))


def _splitmix64_int(x: int) -> int:
    """splitmix64 on one Python int in exact arithmetic (mod 2**64): the host-side scalar part of the key."""
    z = x & _MASK64
    z ^= z >> 30
    z = (z * 0xBF58476D1CE4E5B9) & _MASK64
    z ^= z >> 27
    z = (z * 0x94D049BB133111EB) & _MASK64
    return z ^ (z >> 31)


def device_uniforms(rng: Any, rows: Any, step: int, n: int = 1, *, device: Any = None) -> Any:
    """Keyed uniforms as a float64 tensor on ``device``, for any ``rng`` a sampler accepts.

    An int seed, a :class:`~faithful.rng.KeyedRNG` or None (a fresh seed) is computed on
    the device by :func:`torch_uniforms`; any other uniform source (an object with
    ``uniforms(rows, step, n)``, e.g. a test's boundary source) is called on the host and
    its numbers copied to the device unchanged.

    Parameters:
        rng: int seed, KeyedRNG, None, or a :class:`~faithful.rng.UniformSource`.
        rows, step, n, device: as in :func:`torch_uniforms`.

    Returns:
        float64 tensor ``(R, n)``.

    Example:
        >>> import torch
        >>> device_uniforms(3, [0, 1], step=0).dtype
        torch.float64
    """
    import torch

    source: UniformSource = resolve_rng(rng)
    if isinstance(source, KeyedRNG):
        return torch_uniforms(source, rows, step, n, device=device)
    host_rows: np.ndarray | Sequence[int] = (
        rows.detach().cpu().numpy() if isinstance(rows, torch.Tensor) else rows
    )
    if device is None:
        device = rows.device if isinstance(rows, torch.Tensor) else "cpu"
    u = np.asarray(source.uniforms(host_rows, step, n), dtype=np.float64)
    return torch.from_numpy(np.ascontiguousarray(u)).to(device)
