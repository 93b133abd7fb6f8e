"""Session 9 attack on the conformance matrix: subtly wrong decoders at the documented n, and false alarms.

Each wrong engine computes its own q wrongly and samples from it (a consistent engine with a wrong
definition): the matrix must fail the cell against the canonical q, naming the rule where the support
differs. A correct engine's cells must keep their level over seeds.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import pytest
from faithful.processors import softmax
from faithful.referee.conformance import cases_for, conformance_matrix
from faithful.referee.engines.faithful_engine import FaithfulEngine
from faithful.samplers import make_sampler

Wrong = Callable[[np.ndarray, Mapping[str, Any]], np.ndarray]


class WrongEngine(FaithfulEngine):
    def __init__(self, name: str, q_of: Wrong) -> None:
        self.name = name
        self.q_of = q_of

    def distribution(
        self, logits: np.ndarray, keywords: Mapping[str, Any], history: np.ndarray | None = None
    ) -> np.ndarray:
        return self.q_of(logits, keywords)

    def sample(
        self,
        logits: np.ndarray,
        keywords: Mapping[str, Any],
        n: int,
        seed: int,
        history: np.ndarray | None = None,
    ) -> np.ndarray:
        g = np.random.default_rng(seed)
        return np.stack([g.multinomial(n, q) for q in self.q_of(logits, keywords)])


def _q(logits: np.ndarray, **kw: Any) -> np.ndarray:
    return make_sampler(**kw).distribution(logits)


def top_p_one_too_many(z: np.ndarray, kw: Mapping[str, Any]) -> np.ndarray:
    q, p = _q(z, **kw), softmax(z)
    out = np.where(q > 0, p, 0.0)
    for r in range(z.shape[0]):
        rest = np.flatnonzero((q[r] == 0) & (p[r] > 0))
        if rest.size:
            t = rest[np.argmax(p[r, rest])]
            out[r, t] = p[r, t]
    return out / out.sum(axis=1, keepdims=True)


def top_k_off_by(d: int) -> Wrong:
    return lambda z, kw: _q(z, **{**kw, "top_k": max(1, int(kw["top_k"]) + d)})


def temperature_after_softmax(z: np.ndarray, kw: Mapping[str, Any]) -> np.ndarray:
    return softmax(softmax(z) / float(kw.get("temperature", 1.0)))


@pytest.mark.parametrize(
    ("engine", "setting", "rule"),
    [
        (WrongEngine("top-p+1", top_p_one_too_many), "top-p:0.9", "top_p"),
        (WrongEngine("top-k+1", top_k_off_by(1)), "top-k:5", "top_k"),
        (WrongEngine("top-k-1", top_k_off_by(-1)), "top-k:5", "top_k"),
        (WrongEngine("T-after-softmax", temperature_after_softmax), "temperature:0.7", None),
    ],
    ids=lambda x: getattr(x, "name", None),
)
def test_a_subtly_wrong_decoder_fails_its_cell(engine: WrongEngine, setting: str, rule: str | None) -> None:
    cases = cases_for(50, kinds=("random", "ties", "neg-inf"))
    m = conformance_matrix(["faithful", engine], [setting], cases=cases, n=2000, reps=199)
    assert m.cell("faithful", setting).status == "pass"
    cell = m.cell(engine.name, setting)
    assert cell.status == "fail"
    assert cell.p_canonical is not None and cell.p_canonical <= 0.01
    if rule is not None:  # a support difference is named by its rule, exactly, without sampling
        assert cell.mismatches and all(rule in mm.rules for mm in cell.mismatches)


def test_a_correct_decoder_keeps_its_level_over_seeds() -> None:
    ps = []
    for seed in range(60):
        cases = cases_for(50, seed=seed, kinds=("random", "ties"))
        m = conformance_matrix(
            ["faithful"], ["top-p:0.9", "top-k:5"], cases=cases, n=300, reps=199, seed=seed
        )
        assert all(c.status == "pass" for c in m.cells)  # Bonferroni at 0.01 per engine: seeded, none here
        ps += [c.p_canonical for c in m.cells]
    below = int(np.sum(np.asarray(ps) < 0.1))
    assert 3 <= below <= 24  # 120 p-values at level 0.1: the 99.9% binomial range (scipy binom.ppf)
