"""Every processor of the table in torch ops on the logits' own device.

Each function takes float64 ``(B, V)`` logits on any device and returns a new tensor (the
input is never written), mirroring the numpy reference of the same processor
(:mod:`faithful.processors`) operation for operation, so that elementwise steps give the
same float64 bits and every truncation keeps the same tokens, ties included:

- temperature, min-p, top-n-sigma, the penalties, logit bias and the masks are
  elementwise float64 arithmetic (identical bits to numpy);
- top-k compares with the k-th largest value from ``torch.topk`` (no sort of the row);
- top-p and typical take the threshold of :func:`faithful.torch_backend.select.mass_threshold`
  (a radix select over the float64 keys, no sort); epsilon, eta and XTC compare float64
  probabilities with a bound.

What reads the history (penalties, no-repeat-ngram, DRY) or a token list (logit bias,
allowed/forbidden tokens) is turned into index tensors on the host, from host data only,
and copied to the device without waiting for it (pinned memory, ``non_blocking``); no
processor reads a device value back. Where a mask can empty a row, the row's status code
is set instead of raising (raising would need the host to look): :mod:`.sampler` raises
the reference's error from the codes when the caller checks.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import torch

from faithful.errors import SamplingParameterError
from faithful.mirostat import Mirostat
from faithful.processors import (
    DRY,
    XTC,
    AllowedTokens,
    Epsilon,
    Eta,
    ForbiddenTokens,
    History,
    LogitBias,
    MinP,
    NoRepeatNGram,
    OccurrencePenalty,
    Processor,
    RepetitionPenalty,
    Temperature,
    TopK,
    TopNSigma,
    TopP,
    Typical,
)
from faithful.processors._base import _check_ids_in_vocab, _history_matrix
from faithful.rng import KeyedRNG
from faithful.torch_backend.select import kth_largest, mass_threshold
from faithful.torch_rng import device_uniforms

__all__ = [
    "DEVICE_PROCESSORS",
    "Context",
    "apply_on_device",
    "host_to_device",
    "log_softmax",
    "mirostat_truncate",
]

_NEG_INF = float("-inf")
_LN2 = math.log(2.0)


def host_to_device(array: np.ndarray, device: Any) -> Any:
    """A host array as a tensor on ``device``, copied without making the host wait for the device.

    On CUDA the array is staged in pinned memory and copied with ``non_blocking=True``
    (torch's caching host allocator keeps the staging buffer alive until the copy is done).
    """
    t = torch.from_numpy(np.ascontiguousarray(array))
    if torch.device(device).type == "cpu":
        return t
    return t.pin_memory().to(device, non_blocking=True)


def uniforms_for(
    source: Any, rows_host: np.ndarray | None, rows_device: Any, step: int, n: int, device: Any
) -> Any:
    """float64 ``(B, n)`` keyed uniforms on ``device`` from any uniform source a sampler accepts.

    A :class:`~faithful.rng.KeyedRNG` is computed on the device from the device rows; a source
    with a ``device_uniforms(rows, step, n)`` method (e.g. the vLLM plugin's per-request keys)
    computes them itself; any other source is called on the host and its numbers copied in.
    """
    if isinstance(source, KeyedRNG):
        return device_uniforms(source, rows_device, step, n, device=device)
    if hasattr(source, "device_uniforms"):
        return source.device_uniforms(rows_device, step, n)
    return device_uniforms(source, rows_device if rows_host is None else rows_host, step, n, device=device)


class Context:
    """What a processor may need besides the logits: history, keyed randomness, row ids, step, status."""

    def __init__(
        self,
        history: History | None,
        rng: Any,
        rows_host: np.ndarray | None,
        rows_device: Any,
        step: int,
        status: Any,
    ) -> None:
        self.history = history
        self.rng = rng
        self.rows_host = rows_host
        self.rows_device = rows_device
        self.step = step
        self.status = status  # int32 (B,) on the device: 0 ok, else the first problem's code
        self.lane = 0


def log_softmax(z: Any) -> Any:
    """float64 log-softmax as :func:`faithful._numeric.log_softmax`: ``(z - m) - log(sum exp(z - m))``."""
    m = z.amax(dim=1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)
    s = z - m
    return s - torch.log(torch.exp(s).sum(dim=1, keepdim=True))


def _softmax(z: Any) -> Any:
    w = torch.exp(z - z.amax(dim=1, keepdim=True))
    return w / w.sum(dim=1, keepdim=True)


def _entropy(logp: Any, p: Any) -> Any:
    return -(p * torch.where(p > 0, logp, 0.0)).sum(dim=1, keepdim=True)


def _keep(z: Any, keep: Any) -> Any:
    return torch.where(keep, z, _NEG_INF)


def _is_top(z: Any) -> Any:
    return z == z.amax(dim=1, keepdim=True)


# ---------------------------------------------------------------- temperature and truncation


def temperature(p: Temperature, z: Any, ctx: Context) -> Any:
    top = z.amax(dim=1, keepdim=True)
    if p.temperature == 0:
        return torch.where(z == top, 0.0, _NEG_INF).to(z.dtype)
    return (z - top) / float(p.temperature)


def top_k(p: TopK, z: Any, ctx: Context) -> Any:
    k = int(p.top_k)
    if k >= z.shape[1]:
        return z.clone()
    return _keep(z, z >= kth_largest(z, k)[:, None])


def top_p(p: TopP, z: Any, ctx: Context) -> Any:
    if p.top_p >= 1.0:
        return z.clone()
    w = torch.exp(z - z.amax(dim=1, keepdim=True))
    need = float(p.top_p) * w.sum(dim=1)
    return _keep(z, z >= mass_threshold(z, w, need)[:, None])


def min_p(p: MinP, z: Any, ctx: Context) -> Any:
    if p.min_p == 0:
        return z.clone()
    cut = z.amax(dim=1, keepdim=True) + math.log(float(p.min_p))
    return _keep(z, z >= cut)


def typical(p: Typical, z: Any, ctx: Context) -> Any:
    if p.typical_p >= 1.0:
        return z.clone()
    logp = log_softmax(z)
    prob = torch.exp(logp)
    shifted = torch.abs(-logp - _entropy(logp, prob))
    # ascending |surprise - entropy| until the mass reaches typical_p: the descending search on -key
    need = torch.full((z.shape[0],), float(p.typical_p), dtype=torch.float64, device=z.device)
    cut = -mass_threshold(-shifted, prob, need)
    return _keep(z, shifted <= cut[:, None])


def epsilon(p: Epsilon, z: Any, ctx: Context) -> Any:
    return _keep(z, (_softmax(z) >= p.epsilon) | _is_top(z))


def eta(p: Eta, z: Any, ctx: Context) -> Any:
    logp = log_softmax(z)
    prob = torch.exp(logp)
    eps = float(p.epsilon)
    cut = torch.clamp_max(math.sqrt(eps) * torch.exp(-_entropy(logp, prob)), eps)
    return _keep(z, (prob >= cut) | _is_top(z))


def top_n_sigma(p: TopNSigma, z: Any, ctx: Context) -> Any:
    finite = torch.isfinite(z)
    count = finite.sum(dim=1, keepdim=True)
    zf = torch.where(finite, z, 0.0)
    mean = zf.sum(dim=1, keepdim=True) / count
    var = torch.where(finite, (zf - mean) ** 2, 0.0).sum(dim=1, keepdim=True) / count
    cut = z.amax(dim=1, keepdim=True) - float(p.n) * torch.sqrt(var)
    return _keep(z, z >= cut)


# ---------------------------------------------------------------- history and masks


def _history_index(history: History | None, z: Any, name: str) -> tuple[Any, Any]:
    rows, tokens = _history_matrix(history, tuple(z.shape), name)  # validated on the host
    return host_to_device(rows.astype(np.int64), z.device), host_to_device(tokens, z.device)


def repetition_penalty(p: RepetitionPenalty, z: Any, ctx: Context) -> Any:
    rows, tokens = _history_index(ctx.history, z, p.name)
    seen = torch.zeros(z.shape, dtype=torch.bool, device=z.device)
    # values made on the device: assigning a Python scalar would copy it from the host each call
    seen.index_put_((rows, tokens), torch.ones(tokens.shape, dtype=torch.bool, device=z.device))
    pen = float(p.penalty)
    return torch.where(seen, torch.where(z < 0, z * pen, z / pen), z)


def occurrence_penalty(p: OccurrencePenalty, z: Any, ctx: Context) -> Any:
    rows, tokens = _history_index(ctx.history, z, "presence/frequency penalty")
    counts = torch.zeros(z.shape, dtype=torch.float64, device=z.device)
    counts.index_put_((rows, tokens), torch.ones_like(tokens, dtype=torch.float64), accumulate=True)
    return z - float(p.presence) * (counts > 0).to(torch.float64) - float(p.frequency) * counts


def dry(p: DRY, z: Any, ctx: Context) -> Any:
    _history_matrix(ctx.history, tuple(z.shape), p.name)  # validates shape and ids
    assert ctx.history is not None
    rows: list[int] = []
    tokens: list[int] = []
    amounts: list[float] = []
    for row, seq in enumerate(ctx.history):  # the penalties depend on the history only: host work
        for token, amount in p.penalties(seq).items():
            rows.append(row)
            tokens.append(token)
            amounts.append(amount)
    out = z.clone()
    if rows:
        index = (
            host_to_device(np.asarray(rows, dtype=np.int64), z.device),
            host_to_device(np.asarray(tokens, dtype=np.int64), z.device),
        )
        out.index_put_(
            index, -host_to_device(np.asarray(amounts, dtype=np.float64), z.device), accumulate=True
        )
    return out


def no_repeat_ngram(p: NoRepeatNGram, z: Any, ctx: Context) -> Any:
    _history_matrix(ctx.history, tuple(z.shape), "no_repeat_ngram_size")
    assert ctx.history is not None
    n = int(p.size)
    ban_rows: list[int] = []
    ban_tokens: list[int] = []
    for row, seq in enumerate(ctx.history):
        h = [int(t) for t in seq]
        if len(h) + 1 < n:
            continue
        prefix = tuple(h[len(h) - n + 1 :]) if n > 1 else ()
        for i in range(len(h) - n + 1):
            if tuple(h[i : i + n - 1]) == prefix:
                ban_rows.append(row)
                ban_tokens.append(h[i + n - 1])
    out = z.clone()
    if ban_rows:
        index = (
            host_to_device(np.asarray(ban_rows, dtype=np.int64), z.device),
            host_to_device(np.asarray(ban_tokens, dtype=np.int64), z.device),
        )
        out.index_put_(index, torch.full(index[0].shape, _NEG_INF, dtype=out.dtype, device=out.device))
    return out


def logit_bias(p: LogitBias, z: Any, ctx: Context) -> Any:
    if not p.bias:
        return z.clone()
    ids = np.fromiter(p.bias.keys(), dtype=np.int64)
    _check_ids_in_vocab("logit_bias", ids, z.shape[1])
    add = np.zeros(z.shape[1])
    np.add.at(add, ids, np.fromiter(p.bias.values(), dtype=np.float64))
    return z + host_to_device(add, z.device)[None, :]


def _token_mask(name: str, tokens: Sequence[int], v: int, device: Any) -> Any:
    ids = np.asarray(tokens, dtype=np.int64)
    _check_ids_in_vocab(name, ids, v)
    mask = np.zeros(v, dtype=bool)
    mask[ids] = True
    return host_to_device(mask, device)[None, :]


def allowed_tokens(p: AllowedTokens, z: Any, ctx: Context) -> Any:
    return _keep(z, _token_mask("allowed_tokens", p.tokens, z.shape[1], z.device))


def forbidden_tokens(p: ForbiddenTokens, z: Any, ctx: Context) -> Any:
    return _keep(z, ~_token_mask("forbidden_tokens", p.tokens, z.shape[1], z.device))


# ---------------------------------------------------------------- XTC (stochastic) and mirostat


def xtc(p: XTC, z: Any, ctx: Context) -> Any:
    lane = ctx.lane
    ctx.lane += 1
    if ctx.rng is None:
        raise SamplingParameterError(
            f"{p.name} is stochastic: pass `rng` (an int seed or faithful.rng.KeyedRNG)"
        )
    if p.probability <= 0 or p.threshold > 0.5:
        return z.clone()
    u = uniforms_for(ctx.rng, ctx.rows_host, ctx.rows_device, ctx.step, lane + 1, z.device)[:, lane]
    acts_row = u <= float(p.probability)
    prob = _softmax(z)
    top = prob >= float(p.threshold)
    n_top = top.sum(dim=1, keepdim=True)
    floor = torch.where(top, prob, float("inf")).amin(dim=1, keepdim=True)
    drop = top & (prob > floor)
    remaining = torch.isfinite(z).sum(dim=1, keepdim=True) - drop.sum(dim=1, keepdim=True)
    acts = (n_top >= 2) & (remaining >= int(p.min_keep)) & acts_row[:, None]
    return _keep(z, ~(drop & acts))


def mirostat_truncate(m: Mirostat, z: Any, rows_host: np.ndarray) -> Any:
    """:meth:`Mirostat.truncate` on the device; ``mu`` (host state) is copied in, nothing is read back."""
    mu = host_to_device(m.mu_for(rows_host), z.device)
    v = z.shape[1]
    logp = log_softmax(z)
    top = _is_top(z)
    if m.version == 2:
        return _keep(z, (-logp / _LN2 <= mu[:, None]) | top)
    kk = min(m.m, v)
    lp = torch.topk(logp, kk, dim=1, largest=True, sorted=True).values  # the m largest, descending
    finite = torch.isfinite(lp)
    n_finite = finite.sum(dim=1)
    idx = torch.arange(kk - 1, device=z.device, dtype=torch.float64)
    t = torch.log((idx + 2.0) / (idx + 1.0))
    valid = torch.arange(kk - 1, device=z.device)[None, :] < (n_finite - 1)[:, None]
    diff = torch.where(valid, lp[:, :-1] - lp[:, 1:], 0.0)
    s_hat = (t * diff).sum(dim=1) / torch.where(valid, t * t, 0.0).sum(dim=1)
    e = s_hat - 1.0
    k = ((e * torch.pow(2.0, mu)) / (1.0 - torch.pow(float(v), -e))) ** (1.0 / s_hat)
    k = torch.where((s_hat > 0) & (e != 0), k, float(v))
    k = torch.where(torch.isfinite(k), k.clamp(1.0, float(v)).floor(), float(v))
    k = torch.where(n_finite < 2, 1.0, k)
    # the per-row k-th largest logit: a count threshold, found by the same radix select
    kth = mass_threshold(z, torch.ones_like(z), k)
    return _keep(z, z >= kth[:, None])


Rule = Callable[[Any, Any, Context], Any]

DEVICE_PROCESSORS: dict[type, Rule] = {
    RepetitionPenalty: repetition_penalty,
    OccurrencePenalty: occurrence_penalty,
    DRY: dry,
    LogitBias: logit_bias,
    NoRepeatNGram: no_repeat_ngram,
    AllowedTokens: allowed_tokens,
    ForbiddenTokens: forbidden_tokens,
    Temperature: temperature,
    TopNSigma: top_n_sigma,
    TopK: top_k,
    TopP: top_p,
    MinP: min_p,
    Typical: typical,
    Epsilon: epsilon,
    Eta: eta,
    XTC: xtc,
}

# the processors after which the reference checks that a row still has a token (masks)
_MASKS = (LogitBias, NoRepeatNGram, AllowedTokens, ForbiddenTokens)


def row_status(z: Any, code: int) -> Any:
    """Per row: ``code`` for NaN / +inf, ``code + 1`` for an empty row (all -inf), else 0 (int32)."""
    top = z.amax(dim=1)
    bad = torch.isnan(top) | (top == float("inf"))
    empty = top == _NEG_INF
    return torch.where(bad, code, torch.where(empty, code + 1, 0)).to(torch.int32)


def apply_on_device(z: Any, processors: Sequence[Processor], ctx: Context) -> Any:
    """Apply ``processors`` in order on the device; masks that empty a row set its status code.

    The code of processor ``j`` is ``3 + 2 * j`` (NaN / +inf) or ``4 + 2 * j`` (empty), kept only
    when the row had no earlier problem (the reference raises at the first one).

    Raises:
        SamplingParameterError: a processor with no device rule (a user-defined subclass).
    """
    for j, proc in enumerate(processors):
        rule = DEVICE_PROCESSORS.get(type(proc))
        if rule is None:
            raise SamplingParameterError(
                f"processor {type(proc).__name__} has no torch rule; use backend='numpy' or pass numpy logits"
            )
        z = rule(proc, z, ctx)
        if isinstance(proc, _MASKS):
            ctx.status = torch.where(ctx.status == 0, row_status(z, 3 + 2 * j), ctx.status)
    return z
