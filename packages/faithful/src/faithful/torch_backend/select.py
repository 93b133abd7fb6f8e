"""Sort-free thresholds on the device: the k-th largest value and mass thresholds by radix select.

Every truncation that keeps "the top tokens until their mass reaches a bound" (top-p,
typical, mirostat v1's per-row top-k) needs one number per row: the threshold value
``tau`` such that the kept set is ``{key >= tau}``. The numpy reference finds it with a
sorted window and buckets (:mod:`faithful.selection`); here it is a radix select over
the 64 bits of the key, which needs no sort, no data-dependent shape and no host sync:

- each float64 key is mapped to an int64 whose order is the float order
  (:func:`ordered_keys`; ``-0.0`` is folded into ``+0.0`` first, so equal values are equal keys);
- passes pick the threshold's bits from the top, ``log2(V)`` bits at a time (4 to 11: six
  passes for a vocabulary of 2048 or more): each pass scatters the row's weights into the
  buckets of the next digit (2048 for a large vocabulary), among the
  tokens whose higher bits equal the prefix chosen so far, and keeps the highest
  bucket whose mass (plus the mass already above the prefix) still reaches ``need``;
- after the last pass the prefix *is* a key that occurs in the row, and ``tau`` is its value.

On CPU the search is compacted (``compact``): one pass over the row on the top 14 bits (sign,
exponent and two mantissa bits: a quarter octave a bucket), then only the crossing bucket's
tokens (a few percent of the row), gathered with ``nonzero``, go through 12-bit passes. The
buckets hold the same tokens, so the threshold is the same; ``nonzero`` is a host sync on
CUDA, where the masked passes above run instead. At 8 x 128,256 on a loaded 2-core CPU the
threshold search took 153 ms against the masked passes' 529 ms (a sort of the rows: 130 ms;
medians of 5 interleaved runs).

Ties are exact: tokens with equal keys share every bucket, so ``{key >= tau}`` keeps all
of them, as the reference does. Working memory per call: the int64 keys and one int64
bucket index, ``(B, V)`` each, and a float64 histogram of at most ``(B, min(2V, 2048) + 1)``
(compacted: ``(B, min(2V, 16384) + 1)`` once, then the ``T <= BV`` gathered tokens and a late
histogram of ``(B, 4097)`` only while that is at most ``8 T`` cells, else of each row's non-empty
buckets, at most ``(B, min(V, 4096) + 1)``);
nothing grows with the number of passes. Masses are float64 sums in torch's reduction order, so the threshold
can differ from the reference's only where ``need`` lies within float64 rounding of a
partial sum (about 1e-16 relative).
"""

from __future__ import annotations

from typing import Any

import torch

__all__ = ["COMPACT_ON_CPU", "kth_largest", "mass_threshold", "ordered_keys", "value_of_key"]

_FLIP = 0x7FFFFFFFFFFFFFFF  # xor of a negative float's bits: reverses their order
_SIGN = -(2**63)  # the sign bit as an int64: xor maps signed order to unsigned bit order
_MAX_WIDTH = 11  # 2048 buckets a pass: six passes cover the 64 bits
_FIRST_WIDTH = 14  # compacted search: sign, exponent and 2 mantissa bits first (a quarter octave a bucket)
_LATE_WIDTH = 12  # then 4096 buckets a pass over the few tokens left (fewest passes, measured)
# a late pass's dense histogram (B x 4097, whatever the tokens gathered) while it is at most this many
# cells a gathered token; past it, only each row's non-empty buckets (the same sums, bit for bit).
# Measured one thread, one pass: 8 rows x 3,000 tokens dense 0.25 ms / sparse 1.7 ms; 512 x 30
# dense 13 ms / sparse 1.3 ms; the two cost about the same near 8 to 40 cells a token
_DENSE_PER_TOKEN = 8

# the default of mass_threshold's ``compact`` on CPU; the tests turn it off to run, on CPU, the
# sync-free path a CUDA device takes (a seam for the tests, not a setting)
COMPACT_ON_CPU = True


def _digits(v: int) -> list[tuple[int, int]]:
    """(shift, width) of each pass, top bits first: about log2(V) bits a pass (4 to 11), so the
    histogram, ``B x 2**width``, never outgrows the ``B x V`` logits (the memory bound)."""
    width = min(_MAX_WIDTH, max(4, (max(v, 2) - 1).bit_length()))
    out = []
    top = 64
    while top > 0:
        w = min(width, top)
        out.append((top - w, w))
        top -= w
    return out


def ordered_keys(x: Any) -> Any:
    """int64 keys with the order of float64 ``x`` (``-inf`` smallest, ``+inf`` largest); ``-0.0 == 0.0``."""
    bits = (x + 0.0).view(torch.int64)  # + 0.0 turns -0.0 into +0.0
    return torch.where(bits < 0, bits ^ _FLIP, bits)


def value_of_key(key: Any) -> Any:
    """The float64 value of an :func:`ordered_keys` key (its inverse)."""
    return torch.where(key < 0, key ^ _FLIP, key).view(torch.float64)


def mass_threshold(keys: Any, weights: Any, need: Any, *, compact: bool | None = None) -> Any:
    """Per row, the largest key value ``tau`` with ``sum(weights[keys >= tau]) >= need``.

    The crossing token and every token tied with it are in ``{keys >= tau}``. When
    rounding leaves even the whole row's mass under ``need``, ``tau`` is the smallest key
    of positive weight (everything with weight is kept), as the reference keeps all.

    Parameters:
        keys: float64 ``(B, V)`` (``+-inf`` allowed, no NaN).
        weights: float64 ``(B, V)``, ``>= 0``; every row has a positive weight.
        need: float64 ``(B,)``.
        compact: after the first digit, carry on with only the tokens of the crossing bucket,
            gathered by ``nonzero`` (a few percent of the row: the later passes cost next to
            nothing). ``nonzero`` sizes its output from device data, a host sync on CUDA, so the
            default (None) compacts on CPU only; the kept sets are the same either way.

    Returns:
        float64 ``(B,)``, a value that occurs in each row of ``keys``.

    Example:
        >>> z = torch.tensor([[0.3, 0.1, 0.2]], dtype=torch.float64)
        >>> mass_threshold(z, torch.tensor([[0.2, 0.5, 0.3]], dtype=torch.float64), torch.tensor([0.4])).tolist()
        [0.2]
    """
    b, _ = keys.shape
    device = keys.device
    bits = (keys + 0.0).view(torch.int64)  # + 0.0 turns -0.0 into +0.0
    # ordered_keys with the sign bit flipped, in one step: the unsigned bit order, read off from the top
    ukey = torch.where(bits < 0, ~bits, bits ^ _SIGN)
    prefix = torch.zeros(b, dtype=torch.int64, device=device)
    above = torch.zeros(b, dtype=torch.float64, device=device)
    need = need.to(torch.float64)
    if compact is None:
        compact = device.type == "cpu" and COMPACT_ON_CPU
    if not compact:
        for shift, width in _digits(keys.shape[1]):
            n = 1 << width
            digit = (ukey >> shift) & (n - 1)
            if shift + width < 64:
                high = shift + width
                in_prefix = (ukey >> high) == (prefix >> high)[:, None]
                digit = torch.where(in_prefix, digit, n)  # bucket n collects the rest and is dropped
            hist = torch.zeros((b, n + 1), dtype=torch.float64, device=device)
            hist.scatter_add_(1, digit, weights)
            j, above = _crossing_bucket(hist[:, :n], above, need)
            prefix = prefix | (j << shift)
        return value_of_key(prefix ^ _SIGN)
    # first digit over the whole row; then only the crossing bucket's tokens, compacted
    width = min(_FIRST_WIDTH, max(4, (max(keys.shape[1], 2) - 1).bit_length()))
    shift = 64 - width
    n = 1 << width
    digit = (ukey >> shift) & (n - 1)
    hist = torch.zeros((b, n + 1), dtype=torch.float64, device=device)
    hist.scatter_add_(1, digit, weights)
    j, above = _crossing_bucket(hist[:, :n], above, need)
    prefix = prefix | (j << shift)
    v = keys.shape[1]
    flat_at = (digit == j[:, None]).reshape(-1).nonzero()[:, 0]  # row-major: each row's tokens in order
    rows = torch.div(flat_at, v, rounding_mode="floor")
    ukey = ukey.reshape(-1).index_select(0, flat_at)
    w = weights.reshape(-1).index_select(0, flat_at)
    inside = torch.ones_like(rows, dtype=torch.bool)
    while shift > 0:
        width = min(_LATE_WIDTH, shift)
        shift -= width
        n = 1 << width
        digit = (ukey >> shift) & (n - 1)
        if b * (n + 1) <= _DENSE_PER_TOKEN * rows.shape[0]:
            flat = rows * (n + 1) + torch.where(inside, digit, n)
            hist = torch.zeros(b * (n + 1), dtype=torch.float64, device=device)
            hist.scatter_add_(0, flat, w)
            j, above = _crossing_bucket(hist.view(b, n + 1)[:, :n], above, need)
        else:
            j, above = _sparse_crossing_bucket(rows, digit, inside, w, n, above, need)
        prefix = prefix | (j << shift)
        inside = inside & (digit == j.index_select(0, rows))
    return value_of_key(prefix ^ _SIGN)


def _crossing_bucket(hist: Any, above: Any, need: Any) -> tuple[Any, Any]:
    """The highest bucket whose mass (plus ``above``, the mass above the prefix) still reaches
    ``need``, and the mass above that bucket; ``hist`` float64 ``(B, n)``, bucket ``n - 1`` highest."""
    n = hist.shape[1]
    # cum[j]: the mass of buckets j..n-1 of this prefix, summed from the top
    cum = hist.flip(1).cumsum(1).flip(1)
    here = above + cum[:, 0]
    need_here = torch.minimum(need, here)  # rounding: never ask for more than the prefix holds
    ok = ((above[:, None] + cum) >= need_here[:, None]) & (hist > 0)
    j = torch.where(ok, torch.arange(n, device=hist.device), -1).amax(dim=1).clamp_min(0)
    above = above + torch.where(j + 1 < n, cum.gather(1, (j + 1).clamp_max(n - 1)[:, None])[:, 0], 0.0)
    return j, above


def _sparse_crossing_bucket(
    rows: Any, digit: Any, inside: Any, w: Any, n: int, above: Any, need: Any
) -> tuple[Any, Any]:
    """:func:`_crossing_bucket` of the gathered tokens' ``n`` buckets, with the same float64 sums.

    A dense ``(B, n + 1)`` histogram costs ``B x n`` whatever the number of tokens gathered:
    at ``n = 4096`` and a small vocabulary that is hundreds of times the row (3.3 GB a pass at
    100,000 x 7). Here each row keeps only its non-empty buckets, top digit first, in a
    ``(B, m)`` table (``m``: the most a row has, at most its gathered tokens). The arithmetic is
    the dense one's: a bucket's mass is the same sequential sum of its tokens in row order
    (``scatter_add_``), and the running sums from the top skip only empty buckets, whose
    ``+ 0.0`` changes no bit; so the digit and the mass above it are bit for bit the same.

    Parameters:
        rows: int64 ``(T,)`` each gathered token's row, ascending. digit: int64 ``(T,)`` in ``[0, n)``.
        inside: bool ``(T,)`` the tokens still under the prefix. w: float64 ``(T,)`` their weights.
        n: buckets of this digit. above, need: float64 ``(B,)``, as :func:`_crossing_bucket`.

    Returns:
        ``(j, above)`` as :func:`_crossing_bucket` of the dense histogram returns them.
    """
    b = above.shape[0]
    device = above.device
    # one slot per (row, digit), the top digit first; tokens outside the prefix share one slot past every row
    slot = torch.where(inside, rows * n + (n - 1 - digit), b * n)
    keys, at = torch.unique(slot, sorted=True, return_inverse=True)
    key_row = torch.div(keys, n, rounding_mode="floor")  # b: the dropped slot
    count = torch.bincount(key_row, minlength=b + 1)[:b]  # non-empty buckets of each row
    start = torch.cumsum(count, 0) - count
    m = max(int(count.max()) if b else 0, 1)  # a host read: the compacted search has synced already (nonzero)
    kept = key_row < b
    key_row = key_row.clamp_max(b - 1)
    rank = torch.arange(keys.shape[0], device=device) - start.index_select(0, key_row)
    cell = torch.where(kept, key_row * (m + 1) + rank, b * (m + 1))  # the last cell: the dropped slot
    hist = torch.zeros(b * (m + 1) + 1, dtype=torch.float64, device=device)
    hist.scatter_add_(0, cell.index_select(0, at), w)  # in token order: each bucket's sum as the dense one's
    hist = hist[: b * (m + 1)].view(b, m + 1)[:, :m]
    digits = torch.full((b * (m + 1) + 1,), -1, dtype=torch.int64, device=device)
    digits.scatter_(0, cell, n - 1 - (keys - key_row * n))  # each cell's digit (-1: no bucket)
    digits = digits[: b * (m + 1)].view(b, m + 1)[:, :m]
    # cum[:, r]: the mass of the row's r + 1 highest buckets, summed from the top (the dense cum at them)
    cum = hist.cumsum(1)
    here = above + cum[:, -1]
    need_here = torch.minimum(need, here)  # rounding: never ask for more than the prefix holds
    ok = ((above[:, None] + cum) >= need_here[:, None]) & (hist > 0)
    first = torch.where(ok, torch.arange(m, device=device), m).amin(dim=1)  # the highest digit that is ok
    found = first < m
    j = torch.where(found, digits.gather(1, first.clamp_max(m - 1)[:, None])[:, 0], 0)
    # buckets above j: the dense path's cum[j + 1] sums them (none found: j = 0, every bucket but digit 0)
    last = (count - 1).clamp_min(0)
    has_zero = (count > 0) & (digits.gather(1, last.clamp_max(m - 1)[:, None])[:, 0] == 0)
    n_above = torch.where(found, first, count - has_zero.to(torch.int64))
    above = above + torch.where(n_above > 0, cum.gather(1, (n_above - 1).clamp_min(0)[:, None])[:, 0], 0.0)
    return j, above


def kth_largest(z: Any, k: int) -> Any:
    """Per row, the ``k``-th largest value (``-inf`` when ``k`` exceeds the row), via ``torch.topk``.

    ``topk`` selects without sorting the row (O(V log k) work); ``k >= 1``.

    Example:
        >>> kth_largest(torch.tensor([[1.0, 3.0, 2.0, 3.0]]), 2).tolist()
        [3.0]
    """
    if k > z.shape[1]:
        return torch.full((z.shape[0],), float("-inf"), dtype=z.dtype, device=z.device)
    return torch.topk(z, k, dim=1, largest=True, sorted=False).values.amin(dim=1)
