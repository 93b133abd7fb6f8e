"""Diversity, repetition, n-gram and length statistics of a set of decoded outputs.

All functions take *content* sequences: token ids without the EOS (use
:func:`strip_eos`). They need no model, so they compare a decoder's outputs
with exact samples, with a model's expected frequencies, or with a human
reference corpus alike.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from faithful.errors import FaithfulError
from faithful.fidelity.stats import jensen_shannon, total_variation

__all__ = [
    "distinct_n",
    "length_counts",
    "ngram_divergence",
    "ngram_frequencies",
    "repetition_rate",
    "sequence_duplicate_rate",
    "strip_eos",
]

Key = tuple[int, ...]


def strip_eos(outputs: Iterable[Sequence[int]], eos_token_id: int | None) -> list[Key]:
    """Cut each output before its first EOS.

    >>> strip_eos([[3, 4, 0, 0], [5]], eos_token_id=0)
    [(3, 4), (5,)]
    """
    out: list[Key] = []
    for seq in outputs:
        row: list[int] = []
        for t in seq:
            if eos_token_id is not None and int(t) == eos_token_id:
                break
            row.append(int(t))
        out.append(tuple(row))
    return out


def _check_n(n: int) -> None:
    if n < 1:
        raise FaithfulError(f"`n` must be >= 1 for n-gram statistics, got {n}")


def distinct_n(sequences: Sequence[Sequence[int]], n: int) -> float:
    """distinct-n: unique n-grams over all n-grams in the whole set (Li et al., 2016).

    Returns 0.0 when no sequence is long enough to hold an n-gram.

    >>> distinct_n([(1, 2, 3), (1, 2, 4)], 2)
    0.75
    """
    _check_n(n)
    seen: set[Key] = set()
    total = 0
    for s in sequences:
        t = tuple(s)
        for i in range(len(t) - n + 1):
            seen.add(t[i : i + n])
            total += 1
    return len(seen) / total if total else 0.0


def repetition_rate(sequences: Sequence[Sequence[int]], n: int = 4) -> float:
    """Within-sequence repetition: the share of n-grams that repeat an earlier n-gram of the same output.

    ``sum_s (|s|_n - unique_n(s)) / sum_s |s|_n`` (seq-rep-n of Welleck et
    al., 2020, pooled over tokens); 0.0 when no output holds an n-gram.

    >>> repetition_rate([(1, 2, 1, 2, 1, 2)], n=2)
    0.6
    """
    _check_n(n)
    repeats = total = 0
    for s in sequences:
        t = tuple(s)
        grams = [t[i : i + n] for i in range(len(t) - n + 1)]
        repeats += len(grams) - len(set(grams))
        total += len(grams)
    return repeats / total if total else 0.0


def sequence_duplicate_rate(sequences: Sequence[Sequence[int]]) -> float:
    """Share of outputs that duplicate an earlier output: ``1 - unique / N`` (0 for 20 different outputs,
    0.95 for 20 identical ones)."""
    if not sequences:
        return 0.0
    return 1.0 - len({tuple(s) for s in sequences}) / len(sequences)


def ngram_frequencies(sequences: Sequence[Sequence[int]], n: int) -> dict[Key, float]:
    """Relative frequency of each n-gram over the whole set."""
    _check_n(n)
    c: Counter[Key] = Counter()
    for s in sequences:
        t = tuple(s)
        c.update(t[i : i + n] for i in range(len(t) - n + 1))
    total = sum(c.values())
    return {g: v / total for g, v in c.items()} if total else {}


def ngram_divergence(observed: Mapping[Key, float], reference: Mapping[Key, float]) -> dict[str, float]:
    """Jensen-Shannon divergence (bits) and total variation between two n-gram frequency tables.

    Either table may be empty (no n-grams); the divergence is then NaN unless both are.
    """
    if not observed or not reference:
        nan_or_zero = 0.0 if not observed and not reference else math.nan
        return {"js_bits": nan_or_zero, "tv": nan_or_zero}
    keys = list(set(observed) | set(reference))
    p = np.array([observed.get(k, 0.0) for k in keys])
    q = np.array([reference.get(k, 0.0) for k in keys])
    p, q = p / p.sum(), q / q.sum()
    return {"js_bits": jensen_shannon(p, q), "tv": total_variation(p, q)}


def length_counts(sequences: Sequence[Sequence[int]]) -> dict[int, int]:
    """How many outputs have each content length, sorted by length."""
    return dict(sorted(Counter(len(s) for s in sequences).items()))
