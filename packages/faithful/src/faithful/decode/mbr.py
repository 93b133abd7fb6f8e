"""Minimum-Bayes-risk selection over samples, with a pluggable utility."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from faithful.decode._common import DecodeError, DecodeResult, TokenSampler
from faithful.decode.sampling import ancestral_sample
from faithful.models.base import FloatArray, LanguageModel

__all__ = ["Utility", "exact_match", "mbr_decode", "mbr_select", "negative_edit_distance", "unigram_f1"]

Utility = Callable[[Sequence[int], Sequence[int]], float]
"""``utility(hypothesis, reference) -> float``; larger is better."""


def unigram_f1(hypothesis: Sequence[int], reference: Sequence[int]) -> float:
    """Token-multiset F1 between two id sequences (1.0 for two empty sequences).

    Example::

        >>> unigram_f1([1, 2, 3], [1, 2, 4])
        0.6666666666666666
    """
    if not hypothesis and not reference:
        return 1.0
    overlap = sum((Counter(hypothesis) & Counter(reference)).values())
    if overlap == 0:
        return 0.0
    precision, recall = overlap / len(hypothesis), overlap / len(reference)
    return 2 * precision * recall / (precision + recall)


def exact_match(hypothesis: Sequence[int], reference: Sequence[int]) -> float:
    """1.0 when the sequences are identical, else 0.0 (MBR then picks the sample mode)."""
    return float(list(hypothesis) == list(reference))


def negative_edit_distance(hypothesis: Sequence[int], reference: Sequence[int]) -> float:
    """Minus the Levenshtein distance between the two id sequences."""
    prev = list(range(len(reference) + 1))
    for i, h in enumerate(hypothesis, 1):
        cur = [i]
        for j, r in enumerate(reference, 1):
            cur.append(min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (h != r)))
        prev = cur
    return -float(prev[-1])


def mbr_select(
    hypotheses: Sequence[Sequence[int]],
    evidence: Sequence[Sequence[int]],
    utility: Utility = unigram_f1,
    weights: Sequence[float] | None = None,
) -> FloatArray:
    """Expected utility of each hypothesis against weighted evidence.

    Args:
        hypotheses: ``H`` candidate sequences.
        evidence: ``N`` pseudo-references, e.g. samples from the model.
        utility: ``utility(hypothesis, reference)``.
        weights: ``N`` non-negative weights (default uniform: a Monte Carlo estimate).

    Returns:
        float64 ``(H,)``: ``sum_j w_j U(h, y_j) / sum_j w_j``. The MBR choice is its argmax.

    Raises:
        DecodeError: on empty evidence or mismatched/negative weights.

    Example::

        >>> mbr_select([[1], [2]], [[1], [1], [2]], exact_match).round(3).tolist()
        [0.667, 0.333]
    """
    if not evidence:
        raise DecodeError("MBR needs at least one evidence sequence")
    w = np.ones(len(evidence)) if weights is None else np.asarray(weights, dtype=np.float64)
    if w.shape != (len(evidence),) or np.any(w < 0) or w.sum() <= 0:
        raise DecodeError(f"weights must be {len(evidence)} non-negative numbers with a positive sum")
    cache: dict[tuple[tuple[int, ...], tuple[int, ...]], float] = {}
    out = np.zeros(len(hypotheses))
    for i, h in enumerate(hypotheses):
        th = tuple(h)
        total = 0.0
        for wj, y in zip(w, evidence, strict=True):
            key = (th, tuple(y))
            if key not in cache:
                cache[key] = float(utility(th, key[1]))
            total += wj * cache[key]
        out[i] = total / w.sum()
    return out


def mbr_decode(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    max_new_tokens: int,
    *,
    num_samples: int = 16,
    utility: Utility = unigram_f1,
    sampler: TokenSampler | None = None,
    rng: Any = None,
    return_distributions: bool = False,
) -> DecodeResult:
    """Minimum-Bayes-risk decoding: sample, then pick the sample with the highest expected utility.

    Draws ``num_samples`` ancestral samples per prompt; each sample is both a
    hypothesis and a pseudo-reference (uniform weights). Duplicated samples count
    as often as they were drawn, so the evidence is an unbiased Monte Carlo estimate
    of the model's (or the sampler's) distribution.

    Args:
        model: any :class:`~faithful.models.base.LanguageModel`.
        prompts: ``B`` prompts.
        max_new_tokens: the longest continuation (>= 1).
        num_samples: ``N`` samples per prompt.
        utility: ``utility(hypothesis, reference) -> float`` (default :func:`unigram_f1`).
        sampler: token sampler for the evidence (default: exact sampling from the model).
        rng: int seed, keyed generator, or None.
        return_distributions: also return each sample's per-step ``q`` ``(B, N, T, V)``.

    Returns:
        A :class:`DecodeResult` with all ``N`` samples sorted by expected utility (``scores``);
        ``best()`` is the MBR choice.

    Raises:
        InvalidLengthError, BeamWidthError: on bad ``max_new_tokens``/``num_samples``.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("ab\\nab\\nba\\n", n=2)
        >>> r = mbr_decode(m, [[]], 4, num_samples=8, rng=0)
        >>> r.tokens.shape[:2]
        (1, 8)
    """
    samples = ancestral_sample(
        model,
        prompts,
        max_new_tokens,
        sampler=sampler,
        num_samples=num_samples,
        rng=rng,
        return_distributions=return_distributions,
    )
    seqs = samples.sequences()
    b = samples.logprobs.shape[0]
    expected = np.stack([mbr_select(seqs[i], seqs[i], utility) for i in range(b)])
    order = np.argsort(-expected, axis=1, kind="stable")
    rows = np.arange(b)[:, None]
    return DecodeResult(
        tokens=samples.tokens[rows, order],
        lengths=samples.lengths[rows, order],
        logprobs=samples.logprobs[rows, order],
        token_logprobs=samples.token_logprobs[rows, order],
        scores=expected[rows, order],
        finished=samples.finished[rows, order],
        distributions=None if samples.distributions is None else samples.distributions[rows, order],
        proposal_logprobs=None
        if samples.proposal_logprobs is None
        else samples.proposal_logprobs[rows, order],
    )
