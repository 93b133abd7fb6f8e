"""The essay's experiment: toss a model's coin N times with a decoder and see what comes out.

A model that says ``[0.55, 0.45]`` for every toss expects about 11 heads in 20;
greedy decoding gives 20 heads every time, an outcome of probability
``0.55**20 = 6.4e-6``. :func:`coin_experiment` runs any sampler on the coin
and reports the exact binomial (or multinomial) probability of what came out.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from faithful.errors import FaithfulError
from faithful.fidelity.stats import binomial_pmf, multinomial_pmf, multinomial_test

__all__ = ["CoinResult", "coin_experiment", "outcome_labels"]


def outcome_labels(k: int) -> list[str]:
    """Names of the coin's faces: H/T for two, then A, B, C, ...

    >>> outcome_labels(2), outcome_labels(3)
    (['H', 'T'], ['A', 'B', 'C'])
    """
    if k == 2:
        return ["H", "T"]
    return [chr(ord("A") + i) if i < 26 else f"#{i}" for i in range(k)]


@dataclass(frozen=True)
class CoinResult:
    """What came out of N tosses, and how probable that is under the model.

    Attributes:
        p: the model's probabilities of the faces.
        n: tosses.
        decoder: the sampler spec used.
        seed: the seed.
        outcomes: the face index of each toss.
        counts: tosses per face.
        expected: ``n * p``.
        probability_of_counts: exact ``P(counts)`` under the model (binomial for two faces).
        probability_of_sequence: exact probability of this exact sequence of tosses.
        p_value: exact two-sided test that the tosses come from ``p`` (sum of the probabilities of
            all count vectors no more likely than the observed one).
        decoder_q: the distribution the decoder actually drew each toss from (first toss).
    """

    p: list[float]
    n: int
    decoder: str
    seed: int | None
    outcomes: list[int]
    counts: list[int]
    expected: list[float]
    probability_of_counts: float
    probability_of_sequence: float
    p_value: float
    decoder_q: list[float] | None

    @property
    def labels(self) -> list[str]:
        """Names of the faces."""
        return outcome_labels(len(self.p))

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict, with the tosses also as a string of face labels."""
        d = asdict(self)
        d["labels"] = self.labels
        d["tosses"] = "".join(self.labels[i] for i in self.outcomes)
        return d


def _validate_p(p: Sequence[float]) -> np.ndarray:
    arr = np.asarray(p, dtype=np.float64)
    if arr.ndim != 1 or len(arr) < 2:
        raise FaithfulError(
            f"the coin needs at least two face probabilities, got {list(p)}; e.g. --p 0.55 0.45"
        )
    if np.any(arr < 0) or not np.all(np.isfinite(arr)):
        raise FaithfulError(f"face probabilities must be finite and >= 0, got {list(p)}")
    if not math.isclose(float(arr.sum()), 1.0, abs_tol=1e-6):
        raise FaithfulError(f"face probabilities must sum to 1, got {list(p)} (sum {arr.sum():.6g})")
    return arr


def coin_experiment(
    p: Sequence[float], n: int, sampler: Any = "greedy", *, seed: int | None = 0
) -> CoinResult:
    """Toss the model's coin ``n`` times with ``sampler`` and score the outcome exactly.

    Parameters:
        p: the model's face probabilities, e.g. ``[0.55, 0.45]``; must sum to 1.
        n: tosses, >= 1.
        sampler: a :class:`faithful.samplers.Sampler` or a spec for
            :func:`faithful.samplers.parse_sampler_spec` ("greedy", "sample", "top-p:0.9", ...).
        seed: the seed of the sampler's keyed randomness; toss ``i`` is row ``i`` of one step.

    Returns: :class:`CoinResult`.

    Raises: FaithfulError on invalid ``p``, ``n < 1`` or an unknown sampler spec.

    Example::

        >>> r = coin_experiment([0.55, 0.45], 20, "greedy")
        >>> r.counts, f"{r.probability_of_counts:.2g}"
        ([20, 0], '6.4e-06')
    """
    from faithful.samplers import parse_sampler_spec

    probs = _validate_p(p)
    if n < 1:
        raise FaithfulError(f"`n` (tosses) must be >= 1, got {n}")
    spec = sampler if isinstance(sampler, str) else getattr(sampler, "spec", type(sampler).__name__)
    draw = parse_sampler_spec(sampler) if isinstance(sampler, str) else sampler
    with np.errstate(divide="ignore"):
        logits = np.tile(np.log(probs), (n, 1))
    result = draw(logits, rng=seed, step=0, rows=np.arange(n), return_q=True)
    outcomes = [int(t) for t in np.asarray(result.tokens).reshape(-1)]
    counts = [outcomes.count(i) for i in range(len(probs))]
    q = getattr(result, "q", None)
    q_first = None if q is None else [float(x) for x in np.asarray(q)[0]]
    if len(probs) == 2:
        prob_counts = binomial_pmf(counts[0], n, float(probs[0]))
    else:
        prob_counts = multinomial_pmf(counts, probs)
    log_seq = (
        sum(c * math.log(pi) for c, pi in zip(counts, probs, strict=True) if c > 0)
        if all(pi > 0 for c, pi in zip(counts, probs, strict=True) if c > 0)
        else -math.inf
    )
    return CoinResult(
        p=[float(x) for x in probs],
        n=n,
        decoder=str(spec),
        seed=seed,
        outcomes=outcomes,
        counts=counts,
        expected=[float(n * x) for x in probs],
        probability_of_counts=prob_counts,
        probability_of_sequence=math.exp(log_seq),
        p_value=multinomial_test(counts, probs),
        decoder_q=q_first,
    )
