"""Teacher-forced scoring: exact model log-probabilities of given continuations."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt

from faithful._numeric import check_row_max
from faithful.decode._common import start_expanded
from faithful.models.base import FloatArray, LanguageModel, ModelError

__all__ = ["score_sequences", "step_distributions"]


def _forced(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    tokens: npt.ArrayLike,
    lengths: npt.ArrayLike,
    keep_dists: bool,
) -> tuple[FloatArray, FloatArray | None]:
    tok = np.asarray(tokens, dtype=np.int64)
    lens = np.asarray(lengths, dtype=np.int64)
    if tok.ndim != 3 or lens.shape != tok.shape[:2]:
        raise ModelError(f"tokens must be (B, K, T) and lengths (B, K), got {tok.shape} and {lens.shape}")
    b, k, t = tok.shape
    state, _ = start_expanded(model, prompts, k)
    flat = tok.reshape(b * k, t)
    flat_len = lens.reshape(-1)
    tlp = np.zeros((b * k, t))
    dists = np.zeros((b * k, t, model.vocab_size)) if keep_dists else None
    rows = np.arange(b * k)
    for step in range(t):
        live = flat_len > step
        if not live.any():
            break
        lp = model.next_logprobs(state)
        # a scored row needs a distribution: NaN or a row of -inf came back as a NaN score
        check_row_max(lp[live].max(axis=1))
        cur = np.where(live, flat[:, step], 0)
        if ((cur < 0) | (cur >= model.vocab_size)).any():
            bad = sorted({int(x) for x in cur[(cur < 0) | (cur >= model.vocab_size)]})[:10]
            raise ModelError(
                f"continuations hold token ids {bad} outside the model's vocabulary 0..{model.vocab_size - 1}"
            )
        tlp[live, step] = lp[rows[live], cur[live]]
        if dists is not None:
            dists[live, step] = np.exp(lp[live])
        if step + 1 < t:
            state = model.advance(state, cur)
    return tlp.reshape(b, k, t), None if dists is None else dists.reshape(b, k, t, -1)


def score_sequences(
    model: LanguageModel,
    prompts: Sequence[Sequence[int]],
    continuations: Sequence[Sequence[Sequence[int]]],
) -> FloatArray:
    """Exact log-probabilities of continuations under the model, teacher-forced.

    Args:
        model: any :class:`~faithful.models.base.LanguageModel`.
        prompts: ``B`` prompts.
        continuations: ``[b][k]`` token-id lists (the same ``K`` for every prompt); an EOS, if
            present, is scored like any other token.

    Returns:
        float64 ``(B, K)`` of ``sum_t log p(y_t | prompt, y_<t)``.

    Example::

        >>> from faithful.models import NGramModel
        >>> m = NGramModel.from_text("ab\\n", n=2)
        >>> bool(score_sequences(m, [[]], [[m.vocab.encode("ab") + [0]]])[0, 0] < 0)
        True
    """
    b = len(continuations)
    k = len(continuations[0]) if b else 0
    if any(len(r) != k for r in continuations):
        raise ModelError("every prompt needs the same number of continuations")
    t = max((len(s) for r in continuations for s in r), default=0)
    tok = np.zeros((b, k, max(t, 1)), dtype=np.int64)
    lens = np.zeros((b, k), dtype=np.int64)
    for i, row in enumerate(continuations):
        for j, seq in enumerate(row):
            tok[i, j, : len(seq)] = seq
            lens[i, j] = len(seq)
    tlp, _ = _forced(model, prompts, tok, lens, False)
    out: FloatArray = tlp.sum(axis=2)
    return out


def step_distributions(
    model: LanguageModel, prompts: Sequence[Sequence[int]], tokens: npt.ArrayLike, lengths: npt.ArrayLike
) -> FloatArray:
    """The model's next-token distributions along given continuations.

    Args:
        tokens: int ``(B, K, T)`` continuations (padding ignored).
        lengths: int ``(B, K)`` their lengths.

    Returns:
        float64 ``(B, K, T, V)`` probabilities; zeros past each length.
    """
    _, dists = _forced(model, prompts, tokens, lengths, True)
    assert dists is not None
    return dists
