"""Shared helpers for the sampler tests: an exact goodness-of-fit check."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pytest
from scipy import stats

GOF_DRAWS = 1_000_000


def assert_fits(tokens: np.ndarray, q: np.ndarray, *, alpha: float = 1e-5) -> None:
    """Tokens are draws from q: none outside the support, chi-square p-value above alpha.

    With 10^6 draws a 1% relative error on a category of mass >= 0.05 moves the
    statistic by more than 4 standard errors, and the test rejects it (see
    test_gof_check_catches_a_one_percent_error).
    """
    q = np.asarray(q, dtype=np.float64)
    counts = np.bincount(tokens, minlength=q.size).astype(np.float64)
    assert counts[q == 0].sum() == 0, (
        f"drew tokens of probability 0: {np.flatnonzero((q == 0) & (counts > 0))}"
    )
    support = q > 0
    expected = q[support] * tokens.size
    observed = counts[support]
    if support.sum() == 1:
        assert observed[0] == tokens.size
        return
    # Pool tiny expected cells so the chi-square approximation holds.
    small = expected < 20
    if small.any():
        expected = np.append(expected[~small], expected[small].sum())
        observed = np.append(observed[~small], observed[small].sum())
    p_value = stats.chisquare(observed, expected * observed.sum() / expected.sum()).pvalue
    assert p_value > alpha, f"goodness of fit rejected: p={p_value:.3g}"


@pytest.fixture
def fits() -> Callable[..., None]:
    return assert_fits


try:
    import torch  # noqa: F401

    HAVE_TORCH = True
except ImportError:  # pragma: no cover
    HAVE_TORCH = False

BACKENDS = [
    "numpy",
    pytest.param("torch", marks=pytest.mark.skipif(not HAVE_TORCH, reason="torch not installed")),
]


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)
