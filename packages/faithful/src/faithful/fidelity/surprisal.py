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

One moment is not enough: a decoder can match the mean surprisal and still be
wrong (a mixture of sharpened and flattened outputs, sharp early and flat late),
so three more statistics with known null means are tested, each valid for the
same reason (martingale differences, independent outputs):

* **variance**: ``d_t**2 - v_t`` has mean zero, where ``v_t`` is the model's
  varentropy ``Var(-log p(X | x_<t))`` at that step: per-token surprisal must
  spread as much as the model's does;
* **dispersion**: ``S_i**2 - sum_t v_t`` has mean zero (the increments are
  orthogonal): whole outputs must not be more alike or more varied in surprisal
  than exact samples, which a per-output mixture breaks;
* **positions**: the gap at each position ``t`` (outputs still running),
  ``z_t = sum_i d_it / sqrt(sum_i v_it)``, are uncorrelated standard normals, so
  ``sum_t z_t**2`` is chi-square: a gap that changes sign along the output shows.

What the check cannot see: any deviation that keeps all four null means, such as
a decoder that swaps two tokens of equal probability in some context, or a
change confined to a few rare contexts too small to move the averages at this N.
The exact mode of the harness (enumeration) has no such blind spot.
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
from faithful.fidelity.stats import chi2_sf, normal_sf
from faithful.models.base import LanguageModel

__all__ = [
    "ScoredOutputs",
    "SurprisalCheck",
    "implied_length_distribution",
    "score_outputs",
    "surprisal_check",
]


@dataclass(frozen=True)
class ScoredOutputs:
    """Per-step quantities of outputs under the model, in nats; ragged, one array per output.

    Attributes: ``surprisal[i][t] = -log p(x_t | x_<t)``, ``entropy[i][t] = H(p(. | x_<t))``,
    ``eos_prob[i][t] = p(EOS | x_<t)`` (zeros when the model has no EOS), ``ended[i]``: the
    output ended with EOS, ``varentropy[i][t] = Var(-log p(X | x_<t))`` for ``X ~ p(. | x_<t)``:
    the variance of the surprisal an exact sample would show at that step, and
    ``moment3[i][t]``, ``moment4[i][t]``: its third and fourth central moments (they give the
    null variance of the variance and dispersion statistics of :func:`surprisal_check`).
    """

    surprisal: list[NDArray[np.float64]]
    entropy: list[NDArray[np.float64]]
    eos_prob: list[NDArray[np.float64]]
    ended: list[bool]
    varentropy: list[NDArray[np.float64]]
    moment3: list[NDArray[np.float64]]
    moment4: list[NDArray[np.float64]]

    def take(self, indices: Sequence[int]) -> ScoredOutputs:
        """The outputs at ``indices``, in that order (e.g. to test a subset without scoring again)."""
        idx = [int(i) for i in indices]
        return ScoredOutputs(
            [self.surprisal[i] for i in idx],
            [self.entropy[i] for i in idx],
            [self.eos_prob[i] for i in idx],
            [self.ended[i] for i in idx],
            [self.varentropy[i] for i in idx],
            [self.moment3[i] for i in idx],
            [self.moment4[i] for i in idx],
        )

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
    varentropy: list[Any] = [None] * n
    moment3: list[Any] = [None] * n
    moment4: list[Any] = [None] * n
    order = sorted(range(n), key=lambda i: -len(seqs[i]))
    for lo in range(0, n, batch_size):
        idx = order[lo : lo + batch_size]
        batch = [seqs[i] for i in idx]
        lengths = np.array([len(s) for s in batch])
        width = int(lengths.max()) if len(batch) else 0
        s_acc = np.zeros((len(batch), width))
        h_acc = np.zeros((len(batch), width))
        e_acc = np.zeros((len(batch), width))
        v_acc = np.zeros((len(batch), width))
        m3_acc = np.zeros((len(batch), width))
        m4_acc = np.zeros((len(batch), width))
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
                h = -np.where(p > 0, p * lp, 0.0).sum(axis=1)
                h_acc[:k, t] = h
                # central moments of the surprisal -lp: its deviation from H is -(lp + H)
                c = np.where(p > 0, -(lp + h[:, None]), 0.0)
                pc2 = p * c * c
                v_acc[:k, t] = pc2.sum(axis=1)
                m3_acc[:k, t] = (pc2 * c).sum(axis=1)
                m4_acc[:k, t] = (pc2 * c * c).sum(axis=1)
            if eos is not None:
                e_acc[:k, t] = p[:, eos]
            if t + 1 < width:
                state = model.advance(state, toks)
        for j, i in enumerate(idx):
            length = int(lengths[j])
            surprisal[i], entropy[i], eos_prob[i] = s_acc[j, :length], h_acc[j, :length], e_acc[j, :length]
            varentropy[i], moment3[i], moment4[i] = v_acc[j, :length], m3_acc[j, :length], m4_acc[j, :length]
    ended = [bool(s) and eos is not None and s[-1] == eos for s in seqs]
    return ScoredOutputs(surprisal, entropy, eos_prob, ended, varentropy, moment3, moment4)


@dataclass(frozen=True)
class SurprisalCheck:
    """Surprisal of outputs against what the model says exact samples show, four ways.

    Attributes:
        mean_surprisal, mean_entropy: nats per token.
        gap: their difference (0 in expectation for exact samples); ``ci_low``/``ci_high``: its
            confidence interval at ``confidence``; ``z``, ``gap_p_value``: two-sided test of gap = 0.
        variance_ratio: mean squared per-token deviation ``d_t**2`` over the model's mean varentropy
            (1 in expectation); ``variance_z``, ``variance_p_value``: its two-sided test.
        dispersion_ratio: mean ``S_i**2`` over mean ``sum_t v_t`` (1 in expectation);
            ``dispersion_z``, ``dispersion_p_value``.
        position_chi2, position_df, position_p_value: the per-position gaps (positions reached by
            at least ``min_per_position`` outputs; the later ones pooled into one).
        p_value: the Bonferroni combination of the four (what ``consistent`` and the harness use).
        n_outputs, n_tokens.
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
    gap_p_value: float = math.nan
    variance_ratio: float = math.nan
    variance_z: float = math.nan
    variance_p_value: float = math.nan
    dispersion_ratio: float = math.nan
    dispersion_z: float = math.nan
    dispersion_p_value: float = math.nan
    position_chi2: float = math.nan
    position_df: int = 0
    position_p_value: float = math.nan

    @property
    def consistent(self) -> bool:
        """True when no statistic rejects at level ``1 - confidence`` (Bonferroni over the four)."""
        return self.p_value >= 1.0 - self.confidence

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        return {**asdict(self), "consistent": self.consistent}


def _two_sided(z: float) -> float:
    return min(1.0, 2.0 * normal_sf(abs(z))) if math.isfinite(z) else 0.0


def _ratio_test(per_output: NDArray[np.float64], lengths: NDArray[np.float64]) -> tuple[float, float, float]:
    """Per-token mean of per-output sums, its per-output residual standard error, and its z."""
    n = len(per_output)
    mean = float(per_output.sum() / lengths.sum())
    resid = per_output - mean * lengths
    se = math.sqrt(float((resid**2).sum()) / (n * (n - 1))) / float(lengths.mean())
    if se > 0:
        return mean, se, mean / se
    return mean, se, 0.0 if mean == 0 else math.copysign(math.inf, mean)


def _z(total: float, null_var: float) -> float:
    if null_var > 0:
        return total / math.sqrt(null_var)
    return 0.0 if abs(total) < 1e-12 else math.copysign(math.inf, total)


def _second_moment_tests(
    devs: list[NDArray[np.float64]],
    var: list[NDArray[np.float64]],
    m3: list[NDArray[np.float64]],
    m4: list[NDArray[np.float64]],
) -> tuple[float, float]:
    """z of the variance and dispersion statistics, each normalised by its variance under the model.

    Both are sums of martingale differences whose conditional variances the model gives:
    ``d_t**2 - v_t`` has variance ``m4_t - v_t**2``; the increment of ``S**2 - sum v``,
    ``d_t**2 - v_t + 2 d_t S_<t``, has ``m4_t - v_t**2 + 4 S_<t m3_t + 4 S_<t**2 v_t``. The
    model's variance, not the sample's, normalises them: with the heavy right tail of
    squared surprisal a sample standard error is small exactly when the mean is (few rare
    tokens drawn), which made the self-normalised tests reject several times too often.
    """
    var_total = var_null = disp_total = disp_null = 0.0
    for d, v, a3, a4 in zip(devs, var, m3, m4, strict=True):
        before = np.concatenate([[0.0], np.cumsum(d)[:-1]])  # S_<t
        base = a4 - v * v
        var_total += float((d * d - v).sum())
        var_null += float(base.sum())
        disp_total += float(d.sum() ** 2 - v.sum())
        disp_null += float((base + 4.0 * before * a3 + 4.0 * before * before * v).sum())
    return _z(var_total, var_null), _z(disp_total, disp_null)


def _position_test(
    devs: list[NDArray[np.float64]], var: list[NDArray[np.float64]], min_per_position: int
) -> tuple[float, int]:
    """``sum_t z_t**2`` over positions reached by enough outputs (the rest pooled) and its df."""
    width = max(len(d) for d in devs)
    sum_d = np.zeros(width)
    sum_v = np.zeros(width)
    reached = np.zeros(width)
    for d, v in zip(devs, var, strict=True):
        sum_d[: len(d)] += d
        sum_v[: len(v)] += v
        reached[: len(d)] += 1
    full = reached >= min_per_position
    cut = int(np.argmin(full)) if not full.all() else width
    groups = [(sum_d[t], sum_v[t]) for t in range(cut)]
    if cut < width:
        groups.append((float(sum_d[cut:].sum()), float(sum_v[cut:].sum())))
    chi2, df = 0.0, 0
    for sd, sv in groups:
        if sv > 0:
            chi2 += sd * sd / sv
            df += 1
        elif sd != 0:  # a deviation where the model allows none: impossible under exact sampling
            return math.inf, max(df, 1)
    return chi2, df


def surprisal_check(
    scored: ScoredOutputs, *, confidence: float = 0.95, min_per_position: int = 50
) -> SurprisalCheck:
    """Test whether outputs look like exact samples: the surprisal gap, its variance, its
    dispersion across outputs and its profile along positions (see the module docstring).

    Parameters: ``scored`` from :func:`score_outputs`; ``confidence`` of the interval (and
    ``1 - confidence`` is the level of ``consistent``); ``min_per_position``: outputs a
    position needs to be tested alone (later positions are pooled).
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
    devs = [
        np.asarray(s - h, dtype=np.float64) for s, h in zip(scored.surprisal, scored.entropy, strict=True)
    ]
    var = [np.asarray(v, dtype=np.float64) for v in scored.varentropy]
    lengths = np.array([len(d) for d in devs], dtype=np.float64)
    total = lengths.sum()
    if n < 2 or total == 0:
        raise FaithfulError(
            f"the surprisal check needs at least 2 outputs with tokens, got {n} outputs and {int(total)} tokens"
        )
    mean_s = float(sum(float(s.sum()) for s in scored.surprisal) / total)
    mean_h = float(sum(float(h.sum()) for h in scored.entropy) / total)
    sums = np.array([float(d.sum()) for d in devs])
    gap, se, z = _ratio_test(sums, lengths)
    zq = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    var_sums = np.array([float(v.sum()) for v in var])
    sq_sums = np.array([float((d * d).sum()) for d in devs])
    model_var = float(var_sums.sum())
    variance_z, dispersion_z = _second_moment_tests(devs, var, scored.moment3, scored.moment4)
    position_chi2, position_df = _position_test(devs, var, min_per_position)
    tests = {
        "gap": _two_sided(z),
        "variance": _two_sided(variance_z),
        "dispersion": _two_sided(dispersion_z),
        "positions": chi2_sf(position_chi2, position_df) if position_df > 0 else 1.0,
    }
    combined = min(1.0, len(tests) * min(tests.values()))
    return SurprisalCheck(
        mean_surprisal=mean_s,
        mean_entropy=mean_h,
        gap=gap,
        ci_low=gap - zq * se,
        ci_high=gap + zq * se,
        confidence=confidence,
        z=z,
        p_value=combined,
        n_outputs=n,
        n_tokens=int(total),
        gap_p_value=tests["gap"],
        variance_ratio=float(sq_sums.sum() / model_var) if model_var > 0 else math.inf,
        variance_z=variance_z,
        variance_p_value=tests["variance"],
        dispersion_ratio=float((sums * sums).sum() / model_var) if model_var > 0 else math.inf,
        dispersion_z=dispersion_z,
        dispersion_p_value=tests["dispersion"],
        position_chi2=position_chi2,
        position_df=position_df,
        position_p_value=tests["positions"],
    )


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
