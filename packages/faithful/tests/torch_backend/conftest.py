"""Shared pieces of the torch backend's tests: the devices, the logits families, the samplers of the table."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pytest
from faithful.processors.table import TABLE
from faithful.samplers import Sampler, make_sampler

torch = pytest.importorskip("torch")

# the stated tolerance of the torch backend against the numpy reference (faithful.torch_backend)
LOGQ_ATOL = 1e-12
Q_RTOL = 1e-12

DEVICES = [
    "cpu",
    pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")),
]

B, V = 16, 700


@pytest.fixture(autouse=True)
def one_torch_thread() -> Any:
    """Small tensors: torch's thread pool costs more than it saves on a shared 2-core machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def logits_family(kind: str, seed: int = 0, b: int = B, v: int = V) -> np.ndarray:
    """float64 ``(b, v)`` logits of one family: random, tied, -inf holes, extreme scale."""
    rng = np.random.default_rng(seed)
    if kind == "random":
        return rng.standard_normal((b, v)) * 3.0
    if kind == "tied":  # few distinct values: every threshold falls on a tie
        return rng.integers(0, 5, (b, v)).astype(np.float64) * 0.7
    if kind == "holes":  # most tokens removed already, at least one left per row
        z = rng.standard_normal((b, v)) * 2.0
        z[rng.random((b, v)) < 0.6] = -np.inf
        z[np.arange(b), rng.integers(0, v, b)] = 1.0
        return z
    if kind == "extreme":  # huge offsets and spreads: rounding far from 1
        return 1e12 + rng.standard_normal((b, v)) * np.array([1e-3, 1.0, 50.0, 1e4])[np.arange(b) % 4, None]
    raise ValueError(kind)


KINDS = ["random", "tied", "holes", "extreme"]
HISTORY = [[int(t) for t in np.random.default_rng(50 + r).integers(0, 40, 24)] for r in range(B)]


def _kwargs(entry: Any) -> dict[str, Any]:
    return dict(entry.example)


def table_samplers() -> list[Sampler]:
    """Every processor of the table alone, every pair in the table's order, and the whole chain."""
    out = [make_sampler(**_kwargs(e)) for e in TABLE]
    for a, b in itertools.combinations(TABLE, 2):
        out.append(make_sampler(**_kwargs(a), **_kwargs(b)))
    everything: dict[str, Any] = {}
    for e in TABLE:
        everything.update(_kwargs(e))
    out.append(make_sampler(**everything))
    return out


def twin(sampler: Sampler, backend: str = "torch", fast: bool = True) -> Sampler:
    """The same sampler on ``backend`` (a fresh mirostat state when it has one)."""
    from faithful.mirostat import Mirostat

    miro = sampler.mirostat
    if miro is not None:
        miro = Mirostat(miro.version, miro.tau, miro.eta, miro.m)
    return Sampler(
        sampler.name, sampler.processors, draw=sampler.draw, backend=backend, mirostat=miro, fast=fast
    )
