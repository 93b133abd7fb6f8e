"""Exact sequence distributions of enumerable models, with pruning and the mass it covered.

A decoded output is a tuple of generated token ids. When the model has an EOS
id, an output that ended ends *with* the EOS id; an output without it was cut
at the length bound. Under ancestral sampling with at most ``max_length``
generated tokens (EOS included) the outputs therefore form one exact
distribution, which :func:`enumerate_sequences` computes by walking the prefix
tree breadth-first, batching each depth through the model protocol, and
dropping prefixes whose probability is below ``threshold``. What was dropped
is reported as ``1 - covered_mass``; nothing is renormalised.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from faithful._numeric import check_row_max
from faithful.errors import FaithfulError
from faithful.models.base import LanguageModel

__all__ = [
    "NotEnumerableError",
    "SequenceDistribution",
    "enumerate_sequences",
    "normalize_output",
    "to_numpy_logprobs",
]

Key = tuple[int, ...]


class NotEnumerableError(FaithfulError):
    """The model's sequence distribution is too large to enumerate at the requested bound."""


def to_numpy_logprobs(x: Any) -> NDArray[np.float64]:
    """Return model log-probabilities as a float64 numpy array (torch tensors included)."""
    if hasattr(x, "detach"):
        x = x.detach().to("cpu").double().numpy()
    return np.asarray(x, dtype=np.float64)


def normalize_output(tokens: Iterable[int], eos_token_id: int | None) -> Key:
    """Cut a decoded output at its first EOS (kept) so it matches the keys of a distribution.

    >>> normalize_output([5, 6, 0, 0, 0], eos_token_id=0)
    (5, 6, 0)
    """
    out: list[int] = []
    for t in tokens:
        out.append(int(t))
        if eos_token_id is not None and out[-1] == eos_token_id:
            break
    return tuple(out)


@dataclass(frozen=True)
class SequenceDistribution:
    """The exact probabilities of a model's outputs, as far as they were enumerated.

    Attributes:
        probs: output (tuple of ids, EOS included when it ended) -> probability.
        eos_token_id: the model's EOS id, or None.
        max_length: the bound on generated tokens (EOS included).
        threshold: prefixes below this probability were pruned.
        covered_mass: ``sum(probs.values())``; ``1 - covered_mass`` was pruned.
        prompt: the prompt the outputs continue.

    Example::

        >>> import numpy as np
        >>> from faithful.models import CallableModel
        >>> coin = CallableModel(lambda p: np.log([[0.55, 0.45]] * len(p)), vocab_size=2)
        >>> d = enumerate_sequences(coin, max_length=2)
        >>> round(d.probs[(0, 0)], 4), d.covered_mass
        (0.3025, 1.0)
    """

    probs: dict[Key, float]
    eos_token_id: int | None
    max_length: int
    threshold: float
    covered_mass: float
    prompt: Key = ()
    _keys: list[Key] = field(default_factory=list, repr=False, compare=False)
    # derived tables, computed once: a comparison of many decoders reuses them
    _cache: dict[Any, Any] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        self._keys.extend(sorted(self.probs, key=lambda k: -self.probs[k]))

    @property
    def keys(self) -> list[Key]:
        """Outputs ordered from most to least probable."""
        return self._keys

    @property
    def pruned_mass(self) -> float:
        """Probability of the outputs that were not enumerated."""
        return max(0.0, 1.0 - self.covered_mass)

    def vector(self) -> NDArray[np.float64]:
        """Probabilities in the order of :attr:`keys` (a fresh copy)."""
        if "vector" not in self._cache:
            self._cache["vector"] = np.array([self.probs[k] for k in self._keys], dtype=np.float64)
        return np.array(self._cache["vector"])

    def content(self, key: Key) -> Key:
        """The output without its EOS."""
        if self.eos_token_id is not None and key and key[-1] == self.eos_token_id:
            return key[:-1]
        return key

    def length_distribution(self) -> dict[int, float]:
        """Probability of each content length (EOS not counted), over the covered mass."""
        if "lengths" in self._cache:
            return dict(self._cache["lengths"])
        out: dict[int, float] = {}
        for k, p in self.probs.items():
            n = len(self.content(k))
            out[n] = out.get(n, 0.0) + p
        self._cache["lengths"] = dict(sorted(out.items()))
        return dict(self._cache["lengths"])

    def mean_length(self) -> float:
        """Expected content length, conditioned on the covered outputs."""
        lengths = self.length_distribution()
        total = sum(lengths.values())
        return sum(n * p for n, p in lengths.items()) / total if total > 0 else math.nan

    def truncated_mass(self) -> float:
        """Probability that an output hits the length bound without EOS."""
        if self.eos_token_id is None:
            return self.covered_mass
        return sum(p for k, p in self.probs.items() if not k or k[-1] != self.eos_token_id)

    def ngram_frequencies(self, n: int) -> dict[Key, float]:
        """Expected relative frequency of each content n-gram in the model's outputs.

        ``f(g) = sum_x p(x) count_g(x) / sum_x p(x) |x|_n`` over the covered outputs.
        """
        if ("ngrams", n) in self._cache:
            return dict(self._cache[("ngrams", n)])
        acc: dict[Key, float] = {}
        for k, p in self.probs.items():
            c = self.content(k)
            for i in range(len(c) - n + 1):
                g = c[i : i + n]
                acc[g] = acc.get(g, 0.0) + p
        total = sum(acc.values())
        self._cache[("ngrams", n)] = {g: v / total for g, v in acc.items()} if total > 0 else {}
        return dict(self._cache[("ngrams", n)])

    def sample(self, n: int, rng: np.random.Generator) -> list[Key]:
        """Draw ``n`` exact samples from the covered outputs (renormalised): a reference for diversity.

        Raises: FaithfulError when nothing was enumerated.
        """
        if not self._keys:
            raise FaithfulError("no outputs were enumerated; lower the pruning threshold")
        p = self.vector()
        idx = rng.choice(len(p), size=n, p=p / p.sum())
        return [self._keys[int(i)] for i in idx]

    def counts_of(self, outputs: Sequence[Key]) -> tuple[NDArray[np.int64], int]:
        """Counts of ``outputs`` in the order of :attr:`keys`, and how many fell outside them."""
        if "index" not in self._cache:
            self._cache["index"] = {k: i for i, k in enumerate(self._keys)}
        index = self._cache["index"]
        vec = np.zeros(len(self._keys), dtype=np.int64)
        for k, v in Counter(outputs).items():
            if k in index:
                vec[index[k]] = v
        return vec, len(outputs) - int(vec.sum())


def enumerate_sequences(
    model: LanguageModel,
    max_length: int,
    *,
    prompt: Sequence[int] = (),
    threshold: float = 1e-7,
    max_prefixes: int = 200_000,
    chunk_elements: int = 4_000_000,
) -> SequenceDistribution:
    """Enumerate the outputs of ``model`` up to ``max_length`` generated tokens (EOS included).

    Parameters:
        model: any :class:`~faithful.models.LanguageModel`.
        max_length: the bound on generated tokens, as ``max_new_tokens`` of a decoder.
        prompt: token ids the outputs continue.
        threshold: prefixes (and outputs) with probability below this are pruned;
            0 enumerates everything.
        max_prefixes: the most live prefixes at one depth before giving up.
        chunk_elements: the most ``B * V`` log-probabilities asked of the model at once.

    Returns:
        a :class:`SequenceDistribution`; check ``covered_mass``.

    Raises:
        NotEnumerableError: when a depth would hold more than ``max_prefixes`` prefixes.
        FaithfulError: when ``max_length < 1`` or ``threshold`` is outside [0, 1).
    """
    if max_length < 1:
        raise FaithfulError(f"`max_length` must be >= 1, got {max_length}")
    if not 0.0 <= threshold < 1.0:
        raise FaithfulError(f"`threshold` must be in [0, 1), got {threshold}")
    eos = model.eos_token_id
    log_threshold = math.log(threshold) if threshold > 0 else -math.inf
    state = model.start([list(prompt)])
    prefixes: list[Key] = [()]
    prefix_logp = np.zeros(1, dtype=np.float64)
    probs: dict[Key, float] = {}
    vocab = model.vocab_size
    chunk_rows = max(1, chunk_elements // max(1, vocab))
    for depth in range(max_length):
        rows: list[NDArray[np.int64]] = []
        toks: list[NDArray[np.int64]] = []
        logps: list[NDArray[np.float64]] = []
        for lo in range(0, len(prefixes), chunk_rows):
            hi = min(len(prefixes), lo + chunk_rows)
            sub = state if (lo == 0 and hi == len(prefixes)) else model.select(state, np.arange(lo, hi))
            lp = to_numpy_logprobs(model.next_logprobs(sub))
            # every row is a live prefix: NaN or a row of -inf enumerated nothing, silently
            check_row_max(lp.max(axis=1))
            total = prefix_logp[lo:hi, None] + lp
            r, t = np.nonzero(total >= log_threshold) if threshold > 0 else np.nonzero(np.isfinite(total))
            rows.append(r + lo)
            toks.append(t)
            logps.append(total[r, t])
        r_all = np.concatenate(rows).astype(np.int64)
        t_all = np.concatenate(toks).astype(np.int64)
        lp_all = np.concatenate(logps)
        last = depth == max_length - 1
        ends = (t_all == eos) if eos is not None else np.zeros(len(t_all), dtype=bool)
        done = ends | last
        for i in np.nonzero(done)[0]:
            probs[(*prefixes[r_all[i]], int(t_all[i]))] = math.exp(lp_all[i])
        go = np.nonzero(~done)[0]
        if len(go) == 0:
            break
        if len(go) > max_prefixes:
            raise NotEnumerableError(
                f"enumerating this model needs more than {max_prefixes} live prefixes at length {depth + 1}; "
                "expected a small model: raise the pruning threshold, lower the length bound, "
                "or use the surprisal check, which needs no enumeration"
            )
        prefixes = [(*prefixes[r_all[i]], int(t_all[i])) for i in go]
        prefix_logp = lp_all[go]
        state = model.advance(model.select(state, r_all[go]), t_all[go])
    covered = float(sum(probs.values()))
    return SequenceDistribution(
        probs=probs,
        eos_token_id=eos,
        max_length=max_length,
        threshold=threshold,
        covered_mass=min(1.0, covered),
        prompt=tuple(int(t) for t in prompt),
    )
