"""Small enumerable models and an independent ancestral sampler for the fidelity tests."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from faithful.models import CallableModel, LanguageModel, NGramModel

TEXT = "ab\nabc\nb\nba\ncab\naa\nbca\nabcab\n"


def ancestral_samples(model: LanguageModel, n: int, max_length: int, seed: int) -> list[list[int]]:
    """Exact ancestral samples by inverse CDF, written here independently of faithful's samplers."""
    rng = np.random.default_rng(seed)
    state = model.start([[] for _ in range(n)])
    out: list[list[int]] = [[] for _ in range(n)]
    done = np.zeros(n, dtype=bool)
    for _ in range(max_length):
        p = np.exp(model.next_logprobs(state))
        cdf = np.cumsum(p, axis=1)
        u = rng.random(n)[:, None] * cdf[:, -1:]
        tokens = np.minimum((cdf <= u).sum(axis=1), p.shape[1] - 1).astype(np.int64)
        for i in np.nonzero(~done)[0]:
            out[i].append(int(tokens[i]))
        if model.eos_token_id is not None:
            done |= tokens == model.eos_token_id
        if done.all():
            break
        state = model.advance(state, tokens)
    return out


Ancestral = Callable[[LanguageModel, int, int, int], list[list[int]]]


@pytest.fixture(scope="session")
def ancestral() -> Ancestral:
    """The independent exact sampler above, as a fixture (tests import nothing from conftest)."""
    return ancestral_samples


@pytest.fixture(scope="session")
def ngram() -> NGramModel:
    return NGramModel.from_text(TEXT, n=2, level="char")


@pytest.fixture(scope="session")
def coin() -> CallableModel:
    return CallableModel(lambda prefixes: np.log([[0.55, 0.45]] * len(prefixes)), vocab_size=2)


def _stopping(prefixes: list[tuple[int, ...]]) -> np.ndarray:
    # EOS (id 0) gets likelier with length; tokens 1 and 2 alternate preference
    rows = []
    for pre in prefixes:
        stop = min(0.9, 0.2 + 0.15 * len(pre))
        a = 0.7 if (pre and pre[-1] == 1) else 0.4
        rows.append([stop, (1 - stop) * (1 - a), (1 - stop) * a])
    return np.log(np.array(rows))


@pytest.fixture(scope="session")
def stopping() -> CallableModel:
    """Three tokens, EOS = 0, the EOS probability grows with length."""
    return CallableModel(_stopping, vocab_size=3, eos_token_id=0)
