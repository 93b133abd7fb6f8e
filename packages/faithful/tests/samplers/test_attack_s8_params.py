"""Session 8 attack: integer parameters and token ids past int64 (the kernels and torch read them as int64)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.errors import SamplingParameterError, ShapeMismatchError
from faithful.samplers import make_sampler, parse_sampler_spec

LOGITS = np.log(np.array([[0.5, 0.3, 0.15, 0.05]] * 3))
SEEDS = range(40)


def _tokens(kw: dict[str, Any], backend: str = "numpy") -> list[list[int]]:
    s = make_sampler(backend=backend, **kw)
    x: Any = LOGITS
    if backend == "torch":
        torch = pytest.importorskip("torch")
        x = torch.tensor(LOGITS)
    return [np.asarray(s(x, rng=seed).tokens).tolist() for seed in SEEDS]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("k", [4, 5, 2**31, 2**53, 2**53 + 1, 2**62, 2**63 - 1])
@pytest.mark.parametrize(
    "rest", [{}, {"top_p": 0.9}, {"temperature": 0.5}, {"min_p": 0.1}, {"typical_p": 0.9}, {"epsilon": 0.01}]
)
def test_a_top_k_past_the_vocabulary_keeps_the_row_whatever_its_size(
    backend: str, k: int, rest: dict[str, Any]
) -> None:
    # top_k >= V is a no-op: the same tokens as without top-k for every seed. Before, k near
    # 2**63 wrapped negative in the fused kernel and drew the least likely token every time.
    assert _tokens({"top_k": k, **rest}, backend) == _tokens(rest, backend)
    assert np.array_equal(
        make_sampler(top_k=k, **rest).distribution(LOGITS), make_sampler(**rest).distribution(LOGITS)
    )


INT_PARAMS: list[tuple[str, dict[str, Any]]] = [
    ("top_k", {}),
    ("no_repeat_ngram_size", {}),
    ("dry_allowed_length", {"dry_multiplier": 0.8}),
    ("dry_penalty_last_n", {"dry_multiplier": 0.8}),
    ("xtc_min_keep", {"xtc_probability": 1.0, "xtc_threshold": 0.1}),
]


@pytest.mark.parametrize(("name", "extra"), INT_PARAMS)
@pytest.mark.parametrize("value", [2**63, 2**64, 2**70, np.uint64(2**64 - 1)])
def test_an_int_parameter_past_int64_is_a_clear_error(name: str, extra: dict[str, Any], value: Any) -> None:
    # before: accepted, then an OverflowError deep in torch, or silently a different q (torch XTC)
    with pytest.raises(SamplingParameterError, match=rf"`{name}` must be an int .* <= 2\*\*63 - 1, got"):
        make_sampler(**{name: value}, **extra)


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_xtc_min_keep_at_int64_max_is_the_same_on_both_backends(backend: str) -> None:
    kw = {"xtc_probability": 1.0, "xtc_threshold": 0.1}
    big = make_sampler(backend=backend, xtc_min_keep=2**63 - 1, **kw)
    x: Any = LOGITS
    if backend == "torch":
        torch = pytest.importorskip("torch")
        x = torch.tensor(LOGITS)
    q = np.asarray(big(x, rng=0, return_q=True).q)
    np.testing.assert_allclose(q, np.exp(LOGITS), rtol=1e-12)  # too few would remain: XTC does not act


@pytest.mark.parametrize("token", [2**63, 2**64 - 1, 2**70])
@pytest.mark.parametrize("name", ["allowed_tokens", "forbidden_tokens", "logit_bias"])
def test_a_token_id_past_int64_is_a_clear_error(name: str, token: int) -> None:
    value: Any = {token: 1.0} if name == "logit_bias" else (token,)
    if token < 2**64 and name != "logit_bias":
        value = np.array([token], dtype=np.uint64)
    with pytest.raises(SamplingParameterError, match=rf"`{name}` must be "):
        make_sampler(**{name: value})


def test_the_spec_refuses_a_huge_top_k_instead_of_drawing_the_last_token() -> None:
    with pytest.raises(SamplingParameterError, match="<= 2\\*\\*63 - 1"):
        parse_sampler_spec("top-k:99999999999999999999999")
    s = parse_sampler_spec(f"top-k:{2**63 - 1}")
    assert [int(s(LOGITS, rng=seed).tokens[0]) for seed in SEEDS] == [t[0] for t in _tokens({})]


HISTORY_READERS: list[dict[str, Any]] = [
    {"repetition_penalty": 1.3},
    {"no_repeat_ngram_size": 2},
    {"dry_multiplier": 0.8},
    {"presence_penalty": 1.0},
]


@pytest.mark.parametrize("backend", ["numpy", "torch"])
@pytest.mark.parametrize("kw", HISTORY_READERS)
def test_a_history_of_float_ids_is_a_clear_error(backend: str, kw: dict[str, Any]) -> None:
    x: Any = LOGITS[:1]
    if backend == "torch":
        torch = pytest.importorskip("torch")
        x = torch.tensor(x)
    s = make_sampler(backend=backend, **kw)
    # before: 1.5 was truncated to token 1 and penalised, silently
    with pytest.raises(ShapeMismatchError, match="`history` must hold int token ids"):
        s(x, rng=0, history=[[1.5, 2.0, 1.5, 2.0]])
    ints = np.asarray(s(x, rng=0, history=[np.array([1, 2, 1, 2])], return_q=True).q)
    assert np.array_equal(ints, np.asarray(s(x, rng=0, history=[[1, 2, 1, 2]], return_q=True).q))
