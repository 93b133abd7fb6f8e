"""Hostile inputs on the torch backend: each outcome is the numpy reference's (same error class, or same result).

Found by the review of issue 14 (a campaign over NaN / +-inf rows, empty and one-token vocabularies,
int / bool / half dtypes, non-contiguous, transposed and stride-0 tensors, requires_grad, 1-D input,
batch 0, row ids out of range, negative steps, seeds past 2**63, top-k past V, parameters as numpy
scalars or 0-d tensors); the cases kept here are the ones that pin a behaviour down.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.errors import FaithfulError, InvalidLogitsError
from faithful.samplers import parse_sampler_spec

torch = pytest.importorskip("torch")

SPECS = ["sample", "top-p:0.9", "top-k:3", "typical:0.9", "greedy", "gumbel", "mirostat:2"]


def _outcome(spec: str, backend: str, x: Any, **kw: Any) -> tuple[Any, ...]:
    try:
        r = parse_sampler_spec(spec, backend=backend)(x, **kw)
    except FaithfulError as exc:
        return ("error", type(exc).__name__)
    tokens = r.tokens.tolist() if hasattr(r.tokens, "tolist") else list(r.tokens)
    return ("ok", [int(t) for t in tokens], np.round(np.asarray(r.logprobs.tolist()), 9).tolist())


def _cases() -> list[tuple[str, Any]]:
    g = torch.Generator().manual_seed(0)
    base = torch.randn(3, 8, generator=g, dtype=torch.float64)
    nan = base.clone()
    nan[1, 2] = float("nan")
    pinf = base.clone()
    pinf[0, 3] = float("inf")
    ninf = base.clone()
    ninf[2] = float("-inf")
    return [
        ("nan", nan),
        ("+inf", pinf),
        ("all -inf row", ninf),
        ("empty vocab", torch.zeros(2, 0)),
        ("one token", torch.zeros(2, 1)),
        ("batch 0", torch.zeros(0, 5)),
        ("int", torch.randint(-3, 5, (2, 6), generator=g)),
        ("bool", torch.ones(2, 4, dtype=torch.bool)),
        ("float16", base.to(torch.float16)),
        ("bfloat16", base.to(torch.bfloat16)),
        ("transposed", torch.randn(8, 3, generator=g, dtype=torch.float64).T),
        ("stride 0", torch.randn(1, 8, generator=g).expand(4, 8)),
        ("strided slice", torch.randn(3, 16, generator=g)[:, ::2]),
        ("1-D", torch.randn(8, generator=g)),
    ]


@pytest.mark.parametrize("spec", SPECS)
def test_hostile_logits_give_the_references_outcome(spec: str) -> None:
    for label, x in _cases():
        host = x.numpy() if x.dtype != torch.bfloat16 else x.to(torch.float64).numpy()
        want = _outcome(spec, "numpy", host, rng=3)
        got = _outcome(spec, "torch", x, rng=3)
        assert got == want, label


@pytest.mark.parametrize(
    "kw",
    [
        {"rows": [-1, 0, 1]},
        {"rows": [2**63 - 1, 0, 5]},
        {"rows": [0, 1]},
        {"rows": [0.5, 1.0, 2.0]},
        {"step": -1},
        {"rng": 2**64},
        {"rng": 2**64 - 1},
        {"rng": -1},
        {"step": np.int64(3), "rng": np.int64(5)},
    ],
    ids=str,
)
def test_hostile_keys_give_the_references_outcome(kw: dict[str, Any]) -> None:
    x = torch.randn(3, 8, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    kw = {"rng": 3, **kw}
    for spec in ("sample", "gumbel", "xtc:0.5"):
        assert _outcome(spec, "torch", x, **kw) == _outcome(spec, "numpy", x.numpy(), **kw), spec


def test_requires_grad_logits_leave_no_autograd_graph() -> None:
    x = torch.randn(3, 8, requires_grad=True)
    s = parse_sampler_spec("temperature:0.7+top-p:0.9", backend="torch")
    r = s(x, rng=1, return_q=True)
    assert not r.logprobs.requires_grad and r.logprobs.grad_fn is None and not r.q.requires_grad
    assert not s.distribution(x).requires_grad


@pytest.mark.parametrize("spec", SPECS)
def test_meta_tensors_are_refused_with_a_clear_error(spec: str) -> None:
    """Before: NotImplementedError "Cannot copy out of meta tensor" (or a CUDA error for mirostat)."""
    s = parse_sampler_spec(spec, backend="torch")
    x = torch.empty(2, 8, device="meta")
    with pytest.raises(InvalidLogitsError, match="meta"):
        s(x, rng=1)
    with pytest.raises(InvalidLogitsError, match="meta"):
        s.distribution(x)
