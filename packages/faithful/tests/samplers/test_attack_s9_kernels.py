"""Session 9 attack: the compiled fused kernel against the numpy reference on chains in an explicit order.

``make_sampler(processors=[...])`` applies processors "exactly in that order", and the kernel runs
typical, epsilon, eta, top-p and min-p "in any order". Two orders were wrong: an entropy cut first
(typical or eta) with a top-p later read an entropy of 0 (the histogram pass did not sum ``w * s``),
and a min-p after a typical cut that dropped the top token cut at ``log(min_p)`` from the row's
maximum instead of the kept one (a too-small kept set, or an empty one: a ``ZeroDivisionError``
raised inside the parallel kernel as ``SystemError``, depending on what ran before).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.kernels import available
from faithful.processors import Epsilon, Eta, MinP, Processor, Temperature, TopK, TopP, Typical
from faithful.samplers import make_sampler

pytestmark = pytest.mark.skipif(not available(), reason="numba is not installed (the `fast` extra)")


def assert_kernel_is_the_reference(procs: list[Processor], z: np.ndarray, seed: int) -> None:
    ref = make_sampler(processors=procs, fast=False)(z, rng=seed, return_q=True)
    got = make_sampler(processors=procs, kernels="numba")(z, rng=seed, return_q=True)
    assert ref.q is not None and got.q is not None
    np.testing.assert_array_equal(got.q > 0, ref.q > 0)
    np.testing.assert_array_equal(got.tokens, ref.tokens)
    np.testing.assert_allclose(got.q, ref.q, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(got.logprobs, ref.logprobs, rtol=1e-12, atol=1e-12)


Z4 = np.log(np.array([[0.4, 0.3, 0.2, 0.1]]))


@pytest.mark.parametrize(
    "procs",
    [
        [Eta(0.3), TopP(0.9)],  # eta keeps 3 tokens; the kernel kept 2
        [Eta(0.999), TopP(0.9)],
        [Typical(0.5), TopP(0.5)],
        [Temperature(1.7), Typical(0.9), TopP(0.1)],
        [Eta(0.3), Typical(0.7), TopP(0.8)],
    ],
    ids=repr,
)
def test_an_entropy_cut_before_top_p(procs: list[Processor]) -> None:
    assert_kernel_is_the_reference(procs, Z4, 0)
    z = np.random.default_rng(1).standard_normal((6, 300)) * 2
    assert_kernel_is_the_reference(procs, z, 1)


# Typical keeps only the tokens whose surprise is nearest the entropy, here not the top one: one token
# (4.0), or two groups (0.0 and -0.3) that min-p then splits.
Z_TIES = np.array([[5.0, 5.0, 4.0, 2.0, 2.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0, 0.0, 0.0]])
Z_GROUPS = np.array([[3.0] + [0.0] * 20 + [-0.3] * 20 + [-3.0] * 20])


@pytest.mark.parametrize("min_p", [0.05, 0.5, 0.9])
@pytest.mark.parametrize(("z", "typical"), [(Z_TIES, 1e-9), (Z_TIES, 0.1), (Z_GROUPS, 0.4)])
def test_min_p_after_typical_dropped_the_top_token(z: np.ndarray, typical: float, min_p: float) -> None:
    procs: list[Processor] = [Typical(typical), MinP(min_p)]
    assert not np.isfinite(Typical(typical)(z)[0, 0])  # the case: the top token is gone
    for _ in range(3):  # the same answer whatever ran before (it depended on earlier calls)
        assert_kernel_is_the_reference(procs, z, 0)
        assert_kernel_is_the_reference(procs, np.repeat(z, 5, axis=0), 2)
    assert_kernel_is_the_reference([Temperature(0.7), *procs], z, 3)


def _random_chain(g: np.random.Generator) -> list[Processor]:
    procs: list[Processor] = [Temperature(float(g.choice([0.3, 1.7])))] if g.random() < 0.5 else []
    if g.random() < 0.3:
        procs.append(TopK(int(g.integers(1, 8))))
    makers: list[Any] = [
        lambda: TopP(float(g.choice([1e-9, 0.5, 0.9, g.random()]))),
        lambda: MinP(float(g.choice([1e-6, 0.1, 0.5, g.random()]))),
        lambda: Typical(float(g.choice([1e-9, 0.2, 0.9, g.random()]))),
        lambda: Epsilon(float(g.choice([1e-12, 0.01, 0.3]))),
        lambda: Eta(float(g.choice([1e-12, 0.01, 0.3, 0.999]))),
    ]
    for _ in range(int(g.integers(1, 4))):
        procs.append(makers[int(g.integers(0, len(makers)))]())
    return procs


def test_random_chains_in_any_order_match_the_reference() -> None:
    g = np.random.default_rng(9)
    for it in range(150):
        v = int(g.choice([2, 5, 17, 64]))
        kind = it % 3
        z = g.standard_normal((3, v)) * (2.0 if kind == 0 else 1.0)
        if kind == 1:
            z = np.round(z * 2)  # ties at every cutoff
        elif kind == 2:
            z = np.where(g.random((3, v)) < 0.4, -np.inf, z)
            z[:, 0] = 0.0
        assert_kernel_is_the_reference(_random_chain(g), z, it)
