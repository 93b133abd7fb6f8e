"""Stochastic beam search (Kool, van Hoof and Welling, 2019): k sequences without replacement.

Gumbel-top-k over the sequence tree, sampled top-down: every node's perturbed
log-probability ("key") is the maximum of its children's, so keeping the ``k``
largest keys at each depth yields exactly the ``k`` sequences with the largest
Gumbel-perturbed log-probabilities, i.e. an exact sample of ``k`` distinct
sequences without replacement. The ``(k+1)``-th key ``kappa`` gives inclusion
probabilities ``q_i = P(G_i > kappa) = 1 - exp(-exp(phi_i - kappa))`` and with them
unbiased (Horvitz-Thompson) estimators of expectations under the model.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from faithful._numeric import check_row_max
from faithful.decode._common import (
    PAD,
    BeamWidthError,
    DecodeResult,
    TokenSampler,
    check_max_new_tokens,
    check_width,
    resolve_rng,
    scores_array,
    start_expanded,
)
from faithful.decode.beam import _top_sorted
from faithful.models.base import FloatArray, IntArray, LanguageModel, log_normalize, model_logits

__all__ = ["sbs_estimate", "stochastic_beam_search"]


def _gumbel(u: FloatArray) -> FloatArray:
    out: FloatArray = -np.log(-np.log(u))
    return out


def _log1mexp(a: FloatArray) -> FloatArray:
    """``log(1 - exp(a))`` for ``a <= 0``, accurate on both sides of ``-log 2``."""
    with np.errstate(divide="ignore", invalid="ignore"):
        out: FloatArray = np.where(a > -0.6931471805599453, np.log(-np.expm1(a)), np.log1p(-np.exp(a)))
    return out


def _truncated_gumbel(phi_keys: FloatArray, parent_key: FloatArray) -> FloatArray:
    """Condition Gumbels ``phi_keys`` ``(..., V)`` on their maximum being ``parent_key`` ``(...)``.

    Kool et al. (2019), appendix B, numerically stable form.
    """
    with np.errstate(invalid="ignore", over="ignore"):
        z = np.max(phi_keys, axis=-1, keepdims=True)
        t = parent_key[..., None]
        v = t - phi_keys + _log1mexp(phi_keys - z)
        out = t - np.maximum(v, 0.0) - np.log1p(np.exp(-np.abs(v)))
    result: FloatArray = np.where(np.isneginf(phi_keys), -np.inf, out)
    return result


def _histories(prompt_rows: list[IntArray], generated: IntArray) -> list[IntArray]:
    """Row ``b * slots + s``: prompt ``b`` then slot ``s``'s tokens so far (padding dropped)."""
    out = []
    for i, prompt in enumerate(prompt_rows):
        for row in generated[i]:
            out.append(np.concatenate([prompt, row[row >= 0]]))
    return out


def stochastic_beam_search(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    k: int = 4,
    sampler: TokenSampler | None = None,
    rng: Any = None,
    return_distributions: bool = False,
) -> DecodeResult:
    """Sample ``k`` distinct sequences per prompt without replacement (Gumbel-top-k).

    Sequences are drawn from the distribution of complete continuations, where a
    continuation ends at EOS or is cut at ``max_new_tokens``. With a ``sampler`` the
    per-step distribution is ``sampler.distribution(logits, history=...)`` (temperature,
    top-k, penalties, ...) on the model's raw logits and each row's tokens so far
    (prompt included), instead of the model's own.

    Randomness follows the keyed-RNG contract: the root key of prompt ``b`` uses row
    ``b * (k + 1)`` at step 0 and the children of beam slot ``s`` at depth ``t`` use row
    ``b * (k + 1) + s`` at step ``t + 1`` (one uniform per vocabulary entry).

    Args:
        model: any :class:`~faithful.models.base.LanguageModel`.
        prompts: ``B`` prompts.
        max_new_tokens: the longest continuation (>= 1).
        k: sequences per prompt; at most the number of distinct continuations.
        sampler: optional token sampler whose ``distribution`` defines the per-step ``q``.
        rng: int seed, keyed generator, or None.
        return_distributions: also return each step's ``q`` along the sampled sequences.

    Returns:
        A :class:`DecodeResult` with ``K = k`` candidates sorted by their Gumbel key (``scores``).
        ``proposal_logprobs`` are ``log q`` of each sequence; ``extras`` holds ``"kappa"`` ``(B,)``,
        the ``(k+1)``-th largest key (``-inf`` when there are only ``k`` sequences), and
        ``"inclusion_probs"`` ``(B, k)``, ``q_i(kappa)``. Use :func:`sbs_estimate` for expectations.

    Raises:
        InvalidLengthError: when ``max_new_tokens < 1``.
        BeamWidthError: when ``k`` is below 1 or above the number of distinct continuations.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("ab\\nba\\naa\\n", n=2)
        >>> r = stochastic_beam_search(m, [[]], 3, k=3, rng=0)
        >>> len({tuple(s) for s in r.sequences()[0]})
        3
    """
    max_new_tokens = check_max_new_tokens(max_new_tokens)
    k = check_width("k", k, model, max_new_tokens)
    keyed = resolve_rng(rng)
    slots = k + 1
    state, b = start_expanded(model, prompts, slots)
    v = model.vocab_size
    eos = model.eos_token_id
    rows_of = (np.arange(b)[:, None] * slots + np.arange(slots)[None, :]).reshape(-1)
    key = np.full((b, slots), -np.inf)
    key[:, 0] = _gumbel(keyed.uniforms(np.arange(b) * slots, 0, 1)[:, 0])
    phi = np.zeros((b, slots))  # log q of the prefix
    model_lp = np.zeros((b, slots))
    done = np.zeros((b, slots), dtype=bool)
    ended = np.zeros((b, slots), dtype=bool)
    lengths = np.zeros((b, slots), dtype=np.int64)
    tokens = np.full((b, slots, max_new_tokens), PAD, dtype=np.int64)
    tlp = np.zeros((b, slots, max_new_tokens))
    dists = np.zeros((b, slots, max_new_tokens, v)) if return_distributions else None
    brow = np.arange(b)[:, None]
    prompt_rows = [np.asarray(list(p), dtype=np.int64) for p in prompts]
    for step in range(max_new_tokens):
        # processors read the model's raw logits, as the documentation promises and HF does
        scores = scores_array(model_logits(model, state))  # (b*slots, V)
        expand = np.isfinite(key) & ~done
        # the rows expanded need a finite maximum (NaN, +inf or all -inf was a numpy reshape error)
        check_row_max(scores.max(axis=1)[expand.reshape(-1)])
        lp = log_normalize(scores)
        if sampler is None:
            logq = lp
        else:
            history = _histories(prompt_rows, tokens[:, :, :step])
            with np.errstate(divide="ignore"):
                logq = np.log(np.asarray(sampler.distribution(scores, history=history), dtype=np.float64))
        lp3, logq3 = lp.reshape(b, slots, v), logq.reshape(b, slots, v)
        child_phi = np.where(expand[:, :, None], phi[:, :, None] + logq3, -np.inf)
        g = _gumbel(keyed.uniforms(rows_of, step + 1, v)).reshape(b, slots, v)
        child_key = _truncated_gumbel(child_phi + g, np.where(expand, key, 0.0))
        child_key = np.where(expand[:, :, None], child_key, -np.inf)
        carry_key = np.where(done, key, -np.inf)
        cand = np.concatenate([child_key.reshape(b, slots * v), carry_key], axis=1)
        top = _top_sorted(cand, slots)
        new_key = np.take_along_axis(cand, top, axis=1)
        is_carry = top >= slots * v
        parent = np.where(is_carry, top - slots * v, top // v)
        token = np.where(is_carry, PAD, top % v)
        tok_safe = np.where(is_carry, 0, token)
        # gather the parents' bookkeeping, then write the new token for expanded children
        tokens, tlp = tokens[brow, parent], tlp[brow, parent]
        phi, model_lp = phi[brow, parent], model_lp[brow, parent]
        done, ended, lengths = done[brow, parent], ended[brow, parent], lengths[brow, parent]
        if dists is not None:
            dists = dists[brow, parent]
        grow = ~is_carry & np.isfinite(new_key)
        step_lp = lp3[brow, parent, tok_safe]
        step_q = logq3[brow, parent, tok_safe]
        tokens[:, :, step] = np.where(grow, token, tokens[:, :, step])
        tlp[:, :, step] = np.where(grow, step_lp, tlp[:, :, step])
        phi = np.where(grow, phi + step_q, phi)
        model_lp = np.where(grow, model_lp + step_lp, model_lp)
        lengths = lengths + grow
        if dists is not None:
            q_rows = np.exp(logq3[brow, parent])
            dists[:, :, step] = np.where(grow[:, :, None], q_rows, dists[:, :, step])
        if eos is not None:
            ended = ended | (grow & (token == eos))
        done = (
            done
            | (grow & ((token == eos) if eos is not None else False))
            | (grow & (step + 1 >= max_new_tokens))
        )
        key = new_key
        if step + 1 >= max_new_tokens or bool(np.all(done | ~np.isfinite(key))):
            break
        flat_parent = (brow * slots + parent).reshape(-1)
        feed = np.where(grow, token, eos if eos is not None else 0).reshape(-1)
        state = model.advance(model.select(state, flat_parent), feed.astype(np.int64))
    if not np.all(np.isfinite(key[:, :k])):
        raise BeamWidthError(
            f"k={k} exceeds the number of sequences with positive probability for some prompt; lower k"
        )
    kappa = key[:, k]
    incl = np.where(
        np.isneginf(kappa)[:, None],
        1.0,
        -np.expm1(-np.exp(np.minimum(phi[:, :k] - np.where(np.isneginf(kappa), 0.0, kappa)[:, None], 700.0))),
    )
    width = max(int(lengths[:, :k].max()), 1)
    return DecodeResult(
        tokens=tokens[:, :k, :width],
        lengths=lengths[:, :k],
        logprobs=model_lp[:, :k],
        token_logprobs=tlp[:, :k, :width],
        scores=key[:, :k],
        finished=ended[:, :k],
        distributions=None if dists is None else dists[:, :k, :width],
        proposal_logprobs=phi[:, :k],
        extras={"kappa": kappa, "inclusion_probs": incl},
    )


def sbs_estimate(result: DecodeResult, values: npt.ArrayLike, *, normalize: bool = False) -> FloatArray:
    """Estimate ``E_{y ~ model}[f(y)]`` per prompt from a :func:`stochastic_beam_search` sample.

    The Horvitz-Thompson estimator ``sum_i p(y_i) / q_i(kappa) * f(y_i)`` is unbiased
    (Kool et al., 2019, eq. 10); ``normalize=True`` divides by ``sum_i p(y_i) / q_i``,
    trading a small bias for lower variance (eq. 11). ``p`` is the model's probability,
    so a sampler that tempers or truncates is corrected for.

    Args:
        result: the output of :func:`stochastic_beam_search`.
        values: ``(B, k)`` ``f`` of each sampled sequence.
        normalize: use the self-normalised estimator.

    Returns:
        float64 ``(B,)`` estimates.

    Raises:
        DecodeError: when ``result`` has no inclusion probabilities or ``values`` has the wrong shape.
    """
    from faithful.decode._common import DecodeError

    if not result.extras or "inclusion_probs" not in result.extras:
        raise DecodeError(
            "sbs_estimate needs a result of stochastic_beam_search (it carries inclusion_probs)"
        )
    f = np.asarray(values, dtype=np.float64)
    if f.shape != result.logprobs.shape:
        raise DecodeError(f"values must have shape {result.logprobs.shape} (B, k), got {f.shape}")
    w = np.exp(result.logprobs) / result.extras["inclusion_probs"]
    est: FloatArray = (w * f).sum(axis=1)
    if normalize:
        est = est / w.sum(axis=1)
    return est
