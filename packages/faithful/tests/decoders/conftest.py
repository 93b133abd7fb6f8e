"""Shared fixtures for the decoder tests: small enumerable models, exact distributions, a test sampler."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest
from faithful.models import CallableModel
from faithful.models.base import LanguageModel


def random_table_model(
    vocab_size: int = 3, eos: int | None = 0, seed: int = 0, sharp: float = 1.0
) -> CallableModel:
    """A model whose next-token logits are a fixed random function of the whole prefix."""
    cache: dict[tuple[int, ...], np.ndarray] = {}

    def fn(prefixes: list[tuple[int, ...]]) -> np.ndarray:
        out = np.empty((len(prefixes), vocab_size))
        for i, p in enumerate(prefixes):
            row = cache.get(p)
            if row is None:
                h = (seed * 1_000_003 + hash(p)) % (2**32)
                row = np.random.default_rng(h).normal(size=vocab_size) * sharp
                cache[p] = row
            out[i] = row
        return out

    return CallableModel(fn, vocab_size=vocab_size, eos_token_id=eos)


def exact_distribution(
    model: LanguageModel, prompt: Sequence[int], max_new_tokens: int
) -> dict[tuple[int, ...], float]:
    """Enumerate every continuation (ending at EOS or cut at max_new_tokens) with its probability."""
    out: dict[tuple[int, ...], float] = {}
    frontier: list[tuple[tuple[int, ...], float]] = [((), 0.0)]
    state = model.start([list(prompt)])
    states: list[Any] = [state]
    eos = model.eos_token_id
    while frontier:
        lp = model.next_logprobs(_stack(model, states))
        new_frontier: list[tuple[tuple[int, ...], float]] = []
        new_states: list[Any] = []
        for i, (seq, slp) in enumerate(frontier):
            for tok in range(model.vocab_size):
                if not math.isfinite(lp[i, tok]):
                    continue
                s2 = (*seq, tok)
                l2 = slp + float(lp[i, tok])
                if tok == eos or len(s2) == max_new_tokens:
                    out[s2] = out.get(s2, 0.0) + math.exp(l2)
                else:
                    new_frontier.append((s2, l2))
                    new_states.append(
                        model.advance(model.select(states[i], np.array([0])), np.array([tok], dtype=np.int64))
                    )
        frontier, states = new_frontier, new_states
    return out


def _stack(model: LanguageModel, states: list[Any]) -> Any:
    """Concatenate single-row states by replaying them (works for any model via select on one row)."""
    if len(states) == 1:
        return states[0]
    # states here are single-row; rebuild a batch by concatenating their public fields
    first = states[0]
    fields = first.__dataclass_fields__
    kwargs = {}
    for name in fields:
        vals = [getattr(s, name) for s in states]
        kwargs[name] = (
            np.concatenate(vals) if isinstance(vals[0], np.ndarray) else tuple(v for x in vals for v in x)
        )
    return type(first)(**kwargs)


class InverseCDFTestSampler:
    """A tiny stand-in for faithful.samplers: temperature then exact inverse-CDF draws on keyed uniforms."""

    def __init__(self, temperature: float = 1.0) -> None:
        self.temperature = temperature

    def distribution(self, logits: np.ndarray, *, history: Any = None) -> np.ndarray:
        x = np.asarray(logits, dtype=np.float64) / self.temperature
        p = np.exp(x - x.max(axis=1, keepdims=True))
        return p / p.sum(axis=1, keepdims=True)

    def __call__(
        self,
        logits: np.ndarray,
        *,
        rng: Any = None,
        step: int = 0,
        rows: np.ndarray | None = None,
        history: Any = None,
        return_q: bool = False,
    ) -> Any:
        from types import SimpleNamespace

        from faithful.rng import as_keyed_rng

        q = self.distribution(logits)
        row_ids = np.arange(q.shape[0]) if rows is None else np.asarray(rows)
        u = as_keyed_rng(rng).uniforms(row_ids, step, 1)[:, 0]
        tok = np.minimum((np.cumsum(q, axis=1) < u[:, None]).sum(axis=1), q.shape[1] - 1)
        lq = np.log(q[np.arange(q.shape[0]), tok])
        return SimpleNamespace(tokens=tok.astype(np.int64), logprobs=lq, q=q if return_q else None)


@pytest.fixture
def table_model() -> CallableModel:
    return random_table_model()
