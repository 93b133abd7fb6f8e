"""Compiled, fused kernels (numba): the fast path, tested against the numpy reference.

numba is optional (``pip install faithful[fast]``). Nothing in the numpy reference
(:mod:`faithful.processors`, :mod:`faithful.selection`, :mod:`faithful.draw`) imports this
package; :mod:`faithful.samplers` calls it only when numba is importable and the caller
did not ask for the numpy path. The kernels are compiled on first use and cached on
disk (``cache=True``), so the JIT cost is paid once per machine.

What runs fused (:mod:`faithful.kernels._truncate`): ``temperature (> 0)`` first, then any
of ``top_k`` (first truncation only), ``top_p``, ``min_p``, ``typical_p``, ``epsilon``,
``eta`` in any order, with the inverse-CDF draw. Every other chain runs the reference.

Chains (:mod:`faithful.kernels._chains`): max-product (Viterbi, bit for bit the reference's)
and sum-product (forward, to float64 rounding) over :class:`faithful.chains.LinearChain` tensors,
dispatched by :mod:`faithful.chains.dp`.

Beam search (:mod:`faithful.kernels._beam`): each beam row's exact log-normaliser and its
``2K`` best tokens in one pass over the model's logits, dispatched by :mod:`faithful.decode.beam`.

Example:
    >>> import numpy as np
    >>> from faithful.processors import TopP
    >>> plan = fused_plan([TopP(0.9)])
    >>> plan is None or plan.codes.tolist() == [2]
    True
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from faithful.errors import EmptySupportError, InvalidLogitsError
from faithful.processors import Epsilon, Eta, MinP, Processor, Temperature, TopK, TopP, Typical

__all__ = [
    "FusedPlan",
    "available",
    "beam_candidates",
    "chain_backtrack",
    "chain_forward_max",
    "chain_forward_sum",
    "fused_plan",
    "sample_fused",
]

# the op codes of faithful.kernels._truncate (kept here too so planning never imports numba)
_OP_TOP_K, _OP_TOP_P, _OP_MIN_P, _OP_TYPICAL, _OP_EPSILON, _OP_ETA = 1, 2, 3, 4, 5, 6


def available() -> bool:
    """True when numba can be imported (the kernels themselves are compiled on first call)."""
    return importlib.util.find_spec("numba") is not None


@dataclass(frozen=True)
class FusedPlan:
    """A chain the fused kernel runs: a temperature and truncation ops (codes and values, in order)."""

    temperature: float
    codes: np.ndarray
    values: np.ndarray


def fused_plan(processors: Sequence[Processor]) -> FusedPlan | None:
    """The fused kernel's plan for ``processors``, or None when the chain is not one it runs.

    No-op settings (``top_p = 1``, ``min_p = 0``, ``typical_p = 1``) are dropped, as the
    reference's processors return their input for them.
    """
    t = 1.0
    codes: list[int] = []
    values: list[float] = []
    for i, proc in enumerate(processors):
        if isinstance(proc, Temperature):
            if i != 0 or proc.temperature == 0:
                return None
            t = float(proc.temperature)
        elif isinstance(proc, TopK):
            if codes:  # its bucket counts are those of the whole row
                return None
            codes.append(_OP_TOP_K)
            # the kernel reads k back as int64 from a float: past 2**53 (any k >= V there) it
            # rounded to 2**63 and wrapped negative; clamped, k >= V keeps the row, as it should
            values.append(float(min(int(proc.top_k), 2**53)))
        elif isinstance(proc, TopP):
            if proc.top_p < 1.0:
                codes.append(_OP_TOP_P)
                values.append(float(proc.top_p))
        elif isinstance(proc, MinP):
            if proc.min_p > 0:
                codes.append(_OP_MIN_P)
                values.append(float(proc.min_p))
        elif isinstance(proc, Typical):
            if proc.typical_p < 1.0:
                codes.append(_OP_TYPICAL)
                values.append(float(proc.typical_p))
        elif isinstance(proc, Eta):  # before Epsilon: check the exact type, not a base class
            codes.append(_OP_ETA)
            values.append(float(proc.epsilon))
        elif isinstance(proc, Epsilon):
            codes.append(_OP_EPSILON)
            values.append(float(proc.epsilon))
        else:
            return None
    return FusedPlan(t, np.asarray(codes, dtype=np.int64), np.asarray(values, dtype=np.float64))


def _threads() -> int:
    import numba

    return int(numba.get_num_threads()) or (os.cpu_count() or 1)


def sample_fused(
    x: np.ndarray, u: np.ndarray, plan: FusedPlan, *, return_q: bool = False
) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
    """Draw one token per row with the fused kernel.

    Parameters:
        x: ``(B, V)`` float32 or float64 logits (not modified; read in place when C-contiguous).
        u: ``(B,)`` keyed uniforms in (0, 1) (:mod:`faithful.rng`).
        plan: from :func:`fused_plan`.
        return_q: also return q ``(B, V)`` float64.

    Returns:
        ``(tokens int64 (B,), logprobs float64 (B,), q or None)``: the same as the numpy reference's
        (tested token for token; q to 1e-15 relative).

    Raises:
        InvalidLogitsError: NaN or +inf logits. EmptySupportError: a row entirely -inf.
    """
    from faithful.kernels._truncate import BAD_VALUE, EMPTY_ROW, sample_rows

    xs = np.ascontiguousarray(x)
    if xs.dtype not in (np.float32, np.float64):
        xs = xs.astype(np.float64)
    u64 = np.ascontiguousarray(u, dtype=np.float64)
    tokens, logprobs, status, q = sample_rows(
        xs, float(plan.temperature), plan.codes, plan.values, u64, bool(return_q), _threads()
    )
    if (status == BAD_VALUE).any():
        rows = np.flatnonzero(status == BAD_VALUE)[:10].tolist()
        raise InvalidLogitsError(
            f"logits contain NaN or +inf in rows {rows}; fix the model output (use -inf, not NaN or +inf, to remove a token)"
        )
    if (status == EMPTY_ROW).any():
        rows = np.flatnonzero(status == EMPTY_ROW)[:10].tolist()
        raise EmptySupportError(
            f"rows {rows} have no token left after the input logits; relax the mask or constraint for those rows"
        )
    return tokens, logprobs, (q if return_q else None)


def _transitions_4d(tr: np.ndarray) -> np.ndarray:
    """A chain's transitions as ``(Bt, Tt, S, S)`` (shared ones as ``(1, 1, S, S)``), C-contiguous."""
    if tr.ndim == 2:
        tr = tr[None, None]
    elif tr.ndim == 3:
        tr = tr[:, None]
    return np.ascontiguousarray(tr, dtype=np.float64)


def chain_forward_max(
    initial: np.ndarray, emissions: np.ndarray, transitions: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Max-product forward scores ``(B, T, S)`` of a linear chain: bit for bit the numpy reference's.

    Parameters are the fields of :class:`faithful.chains.LinearChain`.
    """
    from faithful.kernels._chains import forward_max

    out: np.ndarray = forward_max(
        np.ascontiguousarray(initial), np.ascontiguousarray(emissions), _transitions_4d(transitions), lengths
    )
    return out


def chain_backtrack(d: np.ndarray, transitions: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Viterbi paths ``(B, T)`` from max-product scores (first maximal state on ties, ``-1`` past the end)."""
    from faithful.kernels._chains import backtrack

    out: np.ndarray = backtrack(d, _transitions_4d(transitions), lengths)
    return out


def chain_forward_sum(
    initial: np.ndarray, emissions: np.ndarray, shifted: np.ndarray, col: np.ndarray, lengths: np.ndarray
) -> np.ndarray:
    """Sum-product forward scores ``(B, T, S)`` from ``shifted = exp(tr - col)`` and the column maxima ``col``.

    ``shifted`` is ``(S, S)``, ``(B, S, S)`` or ``(B, T-1, S, S)`` and ``col`` the same without the
    second-to-last axis. Equal to the reference's exp -> matmul -> log up to float64 rounding.
    """
    from faithful.kernels._chains import forward_sum

    c = col[None, None] if col.ndim == 1 else (col[:, None] if col.ndim == 2 else col)
    out: np.ndarray = forward_sum(
        np.ascontiguousarray(initial),
        np.ascontiguousarray(emissions),
        _transitions_4d(shifted),
        np.ascontiguousarray(c, dtype=np.float64),
        lengths,
    )
    return out


def beam_candidates(x: np.ndarray, c: int) -> tuple[np.ndarray, np.ndarray]:
    """Each beam row's ``c`` best tokens and their exact float64 log-probabilities, in one pass.

    Parameters:
        x: ``(R, V)`` float32 or float64 logits (read in place when C-contiguous).
        c: candidates per row, ``1 <= c <= V`` (beam search takes ``2K``).

    Returns:
        ``(tokens int64 (R, c), logprobs float64 (R, c))``, sorted by logit descending then token
        id ascending; ``logprobs = (x - max) - log(sum exp(x - max))``, the float64 log-softmax.

    Raises:
        InvalidLogitsError: NaN or +inf logits. EmptySupportError: a row entirely -inf.
    """
    from faithful.kernels._beam import BAD_VALUE, EMPTY_ROW
    from faithful.kernels._beam import beam_candidates as run

    xs = np.ascontiguousarray(x)
    if xs.dtype not in (np.float32, np.float64):
        xs = xs.astype(np.float64)
    tokens, logprobs, status = run(xs, int(c))
    if (status == BAD_VALUE).any():
        rows = np.flatnonzero(status == BAD_VALUE)[:10].tolist()
        raise InvalidLogitsError(
            f"logits contain NaN or +inf in rows {rows}; fix the model output (use -inf, not NaN or +inf, to remove a token)"
        )
    if (status == EMPTY_ROW).any():
        rows = np.flatnonzero(status == EMPTY_ROW)[:10].tolist()
        raise EmptySupportError(
            f"rows {rows} have no token left after the input logits; relax the mask or constraint for those rows"
        )
    return tokens, logprobs
