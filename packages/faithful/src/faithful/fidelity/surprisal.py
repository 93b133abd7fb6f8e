"""The per-step surprisal check, for models too large to enumerate.

At every step of a true sample, the token drawn has expected surprisal
``E[-log p(x_t | x_<t)]`` equal to the entropy ``H(p(. | x_<t))`` of the
distribution it was drawn from. So for exact ancestral samples the per-step
differences ``d_t = -log p(x_t) - H_t`` are martingale differences with mean
zero, and their sum over an output has mean zero too (optional stopping: the
length is bounded). A decoder that favours likely tokens (greedy, beam, top-p,
low temperature) shows a negative gap; one that flattens the distribution a
positive gap. The gap is the ratio ``sum_i S_i / sum_i T_i`` of per-output sums
``S_i`` to lengths ``T_i``; its standard error comes from the per-output
residuals ``S_i - gap * T_i`` (outputs are independent, steps within one are
not), so the confidence interval is valid for any decoder that draws its
outputs independently.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faithful.errors import FaithfulError
from faithful.fidelity.exact import to_numpy_logprobs
from faithful.fidelity.stats import normal_sf
from faithful.models.base import LanguageModel

__all__ = ["ScoredOutputs", "SurprisalCheck", "implied_length_distribution", "score_outputs", "surprisal_check"]


@dataclass(frozen=True)
class ScoredOutputs:
    """Per-step quantities of outputs under the model, in nats; ragged, one array per output.

    Attributes: ``surprisal[i][t] = -log p(x_t | x_<t)``, ``entropy[i][t] = H(p(. | x_<t))``,
    ``eos_prob[i][t] = p(EOS | x_<t)`` (zeros when the model has no EOS), ``ended[i]``: the
    output ended with EOS.
    """

    surprisal: list[NDArray[np.float64]]
    entropy: list[NDArray[np.float64]]
    eos_prob: list[NDArray[np.float64]]
    ended: list[bool]

    @property
    def log_probs(self) -> NDArray[np.float64]:
        """Total log-probability of each output."""
        return np.array([-float(s.sum()) for s in self.surprisal])


def score_outputs(
    model: LanguageModel,
    outputs: Sequence[Sequence[int]],
    *,
    prompt: Sequence[int] = (),
    batch_size: int = 256,
) -> ScoredOutputs:
    """Teacher-force ``outputs`` through ``model`` and record surprisal, entropy and EOS probability.

    Parameters:
        model: a :class:`~faithful.models.LanguageModel`.
        outputs: generated token ids of each output (EOS included when it ended; anything after the
            first EOS is ignored).
        prompt: the prompt every output continues.
        batch_size: outputs scored together.

    Returns: :class:`ScoredOutputs`, in the order of ``outputs``.

    Raises: FaithfulError when an output holds a token outside the vocabulary.
    """
    eos = model.eos_token_id
    seqs: list[list[int]] = []
    for o in outputs:
        row: list[int] = []
        for t in o:
            t = int(t)
            if not 0 <= t < model.vocab_size:
                raise FaithfulError(
                    f"output token {t} is outside the model's vocabulary 0..{model.vocab_size - 1}; "
                    "score outputs with the model that produced them"
                )
            row.append(t)
            if eos is not None and t == eos:
                break
        seqs.append(row)
    n = len(seqs)
    surprisal: list[Any] = [None] * n
    entropy: list[Any] = [None] * n
    eos_prob: list[Any] = [None] * n
    order = sorted(range(n), key=lambda i: -len(seqs[i]))
    for lo in range(0, n, batch_size):
        idx = order[lo : lo + batch_size]
        batch = [seqs[i] for i in idx]
        lengths = np.array([len(s) for s in batch])
        width = int(lengths.max()) if len(batch) else 0
        s_acc = np.zeros((len(batch), width))
        h_acc = np.zeros((len(batch), width))
        e_acc = np.zeros((len(batch), width))
        state = model.start([list(prompt)] * len(batch))
        active = len(batch)
        for t in range(width):
            k = int((lengths > t).sum())
            if k < active:
                state = model.select(state, np.arange(k, dtype=np.int64))
                active = k
            lp = to_numpy_logprobs(model.next_logprobs(state))
            toks = np.array([batch[r][t] for r in range(k)], dtype=np.int64)
            s_acc[:k, t] = -lp[np.arange(k), toks]
            p = np.exp(lp)
            with np.errstate(invalid="ignore"):
                h_acc[:k, t] = -np.where(p > 0, p * lp, 0.0).sum(axis=1)
            if eos is not None:
                e_acc[:k, t] = p[:, eos]
            if t + 1 < width:
                state = model.advance(state, toks)
        for j, i in enumerate(idx):
            length = int(lengths[j])
            surprisal[i], entropy[i], eos_prob[i] = s_acc[j, :length], h_acc[j, :length], e_acc[j, :length]
    ended = [bool(s) and eos is not None and s[-1] == eos for s in seqs]
    return ScoredOutputs(surprisal, entropy, eos_prob, ended)


@dataclass(frozen=True)
class SurprisalCheck:
    """Mean per-token surprisal against the model's mean entropy along the same outputs.

    Attributes: ``mean_surprisal`` and ``mean_entropy`` (nats per token), ``gap`` (their
    difference; 0 in expectation for exact samples), ``ci_low``/``ci_high`` (its confidence
    interval at ``confidence``), ``z`` and ``p_value`` (two-sided test of gap = 0),
    ``n_outputs``, ``n_tokens``. ``consistent`` is True when the interval contains 0.
    """

    mean_surprisal: float
    mean_entropy: float
    gap: float
    ci_low: float
    ci_high: float
    confidence: float
    z: float
    p_value: float
    n_outputs: int
    n_tokens: int

    @property
    def consistent(self) -> bool:
        """True when the confidence interval of the gap contains 0."""
        return self.ci_low <= 0.0 <= self.ci_high

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "consistent": self.consistent}


def surprisal_check(scored: ScoredOutputs, *, confidence: float = 0.95) -> SurprisalCheck:
    """Test whether outputs look like exact samples: is mean surprisal minus mean entropy zero?

    Parameters: ``scored`` from :func:`score_outputs`; ``confidence`` of the interval.
    Returns :class:`SurprisalCheck`. Raises FaithfulError with fewer than 2 outputs or no tokens.

    Example::

        >>> import numpy as np
        >>> from faithful.models import CallableModel
        >>> coin = CallableModel(lambda p: np.log([[0.55, 0.45]] * len(p)), vocab_size=2)
        >>> c = surprisal_check(score_outputs(coin, [[0, 0, 0]] * 50))
        >>> c.gap < 0 and not c.consistent  # all heads: less surprising than the coin's entropy
        True
    """
    if not 0.0 < confidence < 1.0:
        raise FaithfulError(f"`confidence` must be in (0, 1), got {confidence}")
    n = len(scored.surprisal)
    sums = np.array([float((s - h).sum()) for s, h in zip(scored.surprisal, scored.entropy, strict=True)])
    lengths = np.array([len(s) for s in scored.surprisal], dtype=np.float64)
    total = lengths.sum()
    if n < 2 or total == 0:
        raise FaithfulError(
            f"the surprisal check needs at least 2 outputs with tokens, got {n} outputs and {int(total)} tokens"
        )
    mean_s = float(sum(float(s.sum()) for s in scored.surprisal) / total)
    mean_h = float(sum(float(h.sum()) for h in scored.entropy) / total)
    gap = float(sums.sum() / total)
    resid = sums - gap * lengths
    se = math.sqrt(float((resid**2).sum()) / (n * (n - 1))) / float(lengths.mean())
    zq = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    if se > 0:
        z = gap / se
        p = min(1.0, 2.0 * normal_sf(abs(z)))
    else:
        z = 0.0 if gap == 0 else math.copysign(math.inf, gap)
        p = 1.0 if gap == 0 else 0.0
    return SurprisalCheck(mean_s, mean_h, gap, gap - zq * se, gap + zq * se, confidence, z, p, n, int(total))


def implied_length_distribution(scored: ScoredOutputs, max_length: int) -> dict[int, float]:
    """The length distribution implied by the model's EOS probabilities, from exact samples.

    Rao-Blackwellised: ``P(L = t) = E[ p(EOS | x_<t) 1{the output reached step t} ]`` for
    ``t < max_length``, and ``P(L = max_length) = E[ (1 - p(EOS | x_<T-1)) 1{reached step T-1} ]``;
    the estimates are then normalised to sum to one. Each uses the model's probabilities
    instead of the one coin flip a sample made, so it is far less noisy than counting lengths.
    Unbiased (before the normalisation) only when ``scored`` holds exact ancestral samples of the
    model with at most ``max_length`` tokens; lengths count content tokens (no EOS).

    Raises: FaithfulError without samples or with ``max_length < 1``.
    """
    if len(scored.eos_prob) == 0:
        raise FaithfulError("need at least one exact sample to estimate the implied length distribution")
    if max_length < 1:
        raise FaithfulError(f"`max_length` must be >= 1, got {max_length}")
    acc = np.zeros(max_length + 1)
    for e in scored.eos_prob:
        steps = min(len(e), max_length)
        acc[:steps] += e[:steps]
        if len(e) >= max_length:
            acc[max_length] += 1.0 - e[max_length - 1]
    total = float(acc.sum())
    if total <= 0:
        raise FaithfulError("the samples carry no length information (all empty); draw samples with tokens")
    return {t: float(acc[t] / total) for t in range(max_length + 1) if acc[t] > 0}
