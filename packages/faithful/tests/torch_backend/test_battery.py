"""The torch backend against the numpy reference, for every processor of the table and every pair.

Over random, tied, -inf-holed and extreme-scale logits: the same kept set, the same tokens for
the same seed, rows and step, q and log q to the stated tolerance, the same errors, the input
never written, and every row's draw independent of the batch around it.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import numpy as np
import pytest
from faithful.errors import FaithfulError
from faithful.mirostat import Mirostat
from faithful.processors import Temperature, TopK, TopP, Typical
from faithful.samplers import Sampler, greedy, make_sampler

from .conftest import DEVICES, HISTORY, KINDS, LOGQ_ATOL, Q_RTOL, logits_family, table_samplers, twin

torch = pytest.importorskip("torch")

SAMPLERS = table_samplers()
GUMBEL = [
    make_sampler(draw="gumbel", top_k=40),
    make_sampler(draw="gumbel", xtc_probability=0.7, xtc_threshold=0.01),
]


def _run(fn: Any) -> tuple[Any, Exception | None]:
    try:
        return fn(), None
    except FaithfulError as exc:
        return None, exc


ERRORS: list[bool] = []  # per comparison: did the reference raise (the two errors were compared)


def check_against_reference(sampler: Sampler, z: np.ndarray, device: str) -> None:
    reference = twin(sampler, backend="numpy", fast=False)
    device_twin = twin(sampler)
    tensor = torch.from_numpy(z).to(device)
    before = tensor.clone()
    rows = np.arange(300, 300 + z.shape[0])
    history = HISTORY[: z.shape[0]]
    ref, ref_err = _run(lambda: reference(z, rng=11, step=3, rows=rows, history=history, return_q=True))
    got, got_err = _run(
        lambda: device_twin(tensor, rng=11, step=3, rows=rows, history=history, return_q=True)
    )
    ERRORS.append(ref_err is not None)
    assert torch.equal(tensor, before)  # the input is never written
    if ref_err is not None or got_err is not None:
        assert type(got_err) is type(ref_err) and str(got_err) == str(ref_err)
        return
    assert got.tokens.device.type == device
    q = got.q.cpu().numpy()
    np.testing.assert_array_equal(ref.q > 0, q > 0)  # the same kept set, ties included
    np.testing.assert_allclose(q, ref.q, rtol=Q_RTOL, atol=0)
    np.testing.assert_array_equal(got.tokens.cpu().numpy(), ref.tokens)
    np.testing.assert_allclose(got.logprobs.cpu().numpy(), ref.logprobs, rtol=0, atol=LOGQ_ATOL)
    # the numpy fast paths draw the same tokens too
    if sampler.mirostat is None:
        fast = twin(sampler, backend="numpy")(z, rng=11, step=3, rows=rows, history=history)
        np.testing.assert_array_equal(got.tokens.cpu().numpy(), fast.tokens)
    # distribution() is the q of the call
    if sampler.mirostat is None:
        dist = device_twin.distribution(tensor, rng=11, step=3, rows=rows, history=history)
        np.testing.assert_array_equal(dist.cpu().numpy(), q)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sampler", SAMPLERS + GUMBEL, ids=lambda s: s.name)
def test_same_support_tokens_and_q_as_numpy(sampler: Sampler, kind: str, device: str) -> None:
    check_against_reference(sampler, logits_family(kind, seed=len(sampler.name)), device)


@pytest.mark.parametrize("device", DEVICES)
def test_an_explicit_order_runs_in_that_order(device: str) -> None:
    s = make_sampler(processors=[TopP(0.8), Temperature(0.5), Typical(0.9), TopK(30)])
    for kind in KINDS:
        check_against_reference(s, logits_family(kind, seed=5), device)


BATCH_SAMPLERS = [s for s in SAMPLERS[:17] if s.mirostat is None] + [SAMPLERS[-1], *GUMBEL]


@pytest.mark.parametrize("sampler", BATCH_SAMPLERS, ids=lambda s: s.name)
def test_a_rows_draw_does_not_depend_on_the_batch(sampler: Sampler) -> None:
    s = twin(sampler)
    z = torch.from_numpy(logits_family("random", seed=9))
    rows = np.arange(1000, 1000 + z.shape[0])
    batch = s(z, rng=42, step=7, rows=rows, history=HISTORY, return_q=True)
    for i in (0, 7, 15):
        alone = s(z[i : i + 1], rng=42, step=7, rows=[rows[i]], history=HISTORY[i : i + 1], return_q=True)
        assert alone.tokens[0] == batch.tokens[i]
        assert alone.logprobs[0] == batch.logprobs[i]  # bit for bit on the CPU
        assert torch.equal(alone.q[0], batch.q[i])
    perm = np.random.default_rng(0).permutation(z.shape[0])
    shuffled = s(z[perm], rng=42, step=7, rows=rows[perm], history=[HISTORY[i] for i in perm])
    assert torch.equal(shuffled.tokens, batch.tokens[perm])
    # rows as a tensor on the device are the same keys
    as_tensor = s(z, rng=42, step=7, rows=torch.from_numpy(rows), history=HISTORY)
    assert torch.equal(as_tensor.tokens, batch.tokens)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])
def test_half_and_single_precision_tensors_sample_their_exact_values(dtype: str, device: str) -> None:
    t = torch.from_numpy(logits_family("random", seed=3)).to(getattr(torch, dtype))
    exact = t.to(torch.float64).numpy()  # every one of these dtypes widens to float64 exactly
    for kwargs in ({}, {"temperature": 0.8, "top_p": 0.9}, {"top_k": 20, "min_p": 0.05}, {"typical_p": 0.7}):
        ref = make_sampler(fast=False, **kwargs)(exact, rng=1, step=2, return_q=True)
        got = make_sampler(backend="torch", **kwargs)(t.to(device), rng=1, step=2, return_q=True)
        np.testing.assert_array_equal(got.tokens.cpu().numpy(), ref.tokens)
        np.testing.assert_allclose(got.logprobs.cpu().numpy(), ref.logprobs, rtol=0, atol=LOGQ_ATOL)


@pytest.mark.parametrize("version", [1, 2])
def test_mirostat_state_follows_the_reference_step_by_step(version: int) -> None:
    ref = make_sampler(mirostat=version, mirostat_tau=3.0, fast=False)
    dev = make_sampler(mirostat=version, mirostat_tau=3.0, backend="torch")
    assert ref.mirostat is not None and dev.mirostat is not None
    rows = np.arange(5, 5 + 16)
    for step in range(6):
        z = logits_family("random", seed=step)
        a = ref(z, rng=3, step=step, rows=rows)
        b = dev(torch.from_numpy(z), rng=3, step=step, rows=rows)
        np.testing.assert_array_equal(b.tokens.numpy(), a.tokens)
        for r in rows.tolist():
            assert abs(dev.mirostat.mu[r] - ref.mirostat.mu[r]) < 1e-9
    assert isinstance(ref.mirostat, Mirostat)


@pytest.mark.parametrize("device", DEVICES)
def test_bad_input_raises_the_references_error(device: str) -> None:
    z = logits_family("random", seed=1)
    cases: list[tuple[dict[str, Any], np.ndarray, Any]] = []
    nan = z.copy()
    nan[3, 5] = np.nan
    cases.append(({}, nan, None))
    pinf = z.copy()
    pinf[[2, 9], 1] = np.inf
    cases.append(({"top_p": 0.9}, pinf, None))
    empty = z.copy()
    empty[4] = -np.inf
    cases.append(({"top_k": 3}, empty, None))
    holes = np.full_like(z, -np.inf)
    holes[:, 100:] = 0.0
    cases.append(({"allowed_tokens": [1, 2]}, holes, None))  # every row emptied by the mask
    part = holes.copy()
    part[[0, 6], 2] = 1.0
    cases.append(({"allowed_tokens": [1, 2], "top_p": 0.5}, part, None))  # all rows but 0 and 6
    cases.append(({"logit_bias": {3: 1e308}}, np.full_like(z, 1e308), None))  # overflow to +inf
    cases.append(({"repetition_penalty": 1.3}, z, [[0]] * 3))  # history of the wrong length
    cases.append(({"repetition_penalty": 1.3}, z, [[10_000]] * z.shape[0]))  # ids outside the vocabulary
    cases.append(({"no_repeat_ngram_size": 2}, z, None))  # needs a history
    cases.append(({"forbidden_tokens": [700]}, z, None))
    for kwargs, logits, history in cases:
        _, ref_err = _run(partial(make_sampler(fast=False, **kwargs), logits, rng=0, history=history))
        torch_sampler = make_sampler(backend="torch", **kwargs)
        tensor = torch.from_numpy(logits).to(device)
        _, got_err = _run(partial(torch_sampler, tensor, rng=0, history=history))
        assert ref_err is not None, kwargs
        assert type(got_err) is type(ref_err) and str(got_err) == str(ref_err), kwargs
    for bad in (nan, empty):  # greedy checks its input as the reference's argmax does
        _, ref_err = _run(partial(greedy(), bad, return_q=True))
        _, got_err = _run(partial(greedy(backend="torch"), torch.from_numpy(bad).to(device), return_q=True))
        assert ref_err is not None and type(got_err) is type(ref_err) and str(got_err) == str(ref_err)
    with pytest.raises(FaithfulError, match="shape"):
        make_sampler(backend="torch")(torch.zeros(5, device=device), rng=0)
    with pytest.raises(FaithfulError, match="real numbers"):
        make_sampler(backend="torch")(torch.zeros((2, 3), dtype=torch.bool, device=device), rng=0)


def test_unchecked_calls_report_bad_rows_in_the_status() -> None:
    from faithful.torch_backend import sample_tensor

    z = torch.from_numpy(logits_family("random", seed=2))
    z[3, 0] = float("nan")
    z[5] = float("-inf")
    res = sample_tensor(make_sampler(top_p=0.9, backend="torch"), z, rng=0, check=False, return_q=True)
    assert res.status.tolist() == [0, 0, 0, 1, 0, 2] + [0] * 10
    ok = res.status == 0
    assert torch.isfinite(res.logprobs[ok]).all() and (res.q[ok].sum(dim=1) - 1).abs().max() < 1e-12
    with pytest.raises(FaithfulError, match=r"rows \[3\]"):
        res.check()


EDGE_SAMPLERS = [
    make_sampler(temperature=0.0),  # uniform over the maximal logits: ties drawn at random
    make_sampler(top_k=1),
    make_sampler(top_k=10_000),  # k beyond the vocabulary: everything kept
    make_sampler(top_p=1e-12),  # only the top token and its ties
    make_sampler(min_p=1.0),
    make_sampler(typical_p=1e-9),
    make_sampler(epsilon=0.999),
    make_sampler(eta=0.999),
    make_sampler(top_n_sigma=0.0),
    make_sampler(xtc_probability=1.0, xtc_threshold=0.0, xtc_min_keep=0),
    make_sampler(repetition_penalty=1e-3, frequency_penalty=-1e3),  # penalties that overflow nothing
    make_sampler(temperature=1e-300, top_p=0.5),  # (z - max) / T overflows to -inf off the maximum
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("sampler", EDGE_SAMPLERS, ids=lambda s: s.name)
def test_edge_parameters_match_the_reference(sampler: Sampler, kind: str, device: str) -> None:
    check_against_reference(sampler, logits_family(kind, seed=21), device)


@pytest.mark.parametrize("device", DEVICES)
def test_odd_shapes_and_layouts(device: str) -> None:
    s = make_sampler(top_p=0.8, temperature=0.9, backend="torch")
    ref = make_sampler(top_p=0.8, temperature=0.9, fast=False)
    z = logits_family("tied", seed=2)
    cases = {
        "one token": z[:, :1].copy(),
        "one row": z[:1].copy(),
        "transposed": np.ascontiguousarray(z.T).T,  # a non-contiguous view
        "integers": np.rint(z * 3).astype(np.int64),
    }
    for label, x in cases.items():
        t = torch.from_numpy(np.ascontiguousarray(x)).to(device)
        if label == "transposed":
            t = torch.from_numpy(np.ascontiguousarray(x.T)).to(device).T
            assert not t.is_contiguous()
        got = s(t, rng=4, step=1, return_q=True)
        want = ref(x, rng=4, step=1, return_q=True)
        np.testing.assert_array_equal(got.tokens.cpu().numpy(), want.tokens, err_msg=label)
        np.testing.assert_array_equal(got.q.cpu().numpy() > 0, want.q > 0, err_msg=label)
    empty = s(torch.zeros((0, 5), device=device), rng=0, return_q=True)
    assert empty.tokens.shape == (0,) and empty.q.shape == (0, 5)
    grad = torch.zeros((2, 4), device=device, requires_grad=True)
    assert s(grad, rng=0).tokens.shape == (2,)  # read, never written, no graph kept


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("ties", [False, True])
def test_a_language_model_vocabulary(ties: bool, device: str) -> None:
    """V = 50,257: the radix select's widest digits (six passes of 11 bits); bfloat16 values tie often."""
    z = np.random.default_rng(8).standard_normal((4, 50_257)) * 3.0
    if ties:
        z = torch.from_numpy(z).to(torch.bfloat16).to(torch.float64).numpy()
    for kwargs in (
        {"top_p": 0.9},
        {"typical_p": 0.8},
        {"mirostat": 1, "mirostat_tau": 4.0},
        {"temperature": 0.7, "top_k": 500, "top_p": 0.95},
    ):
        check_against_reference(make_sampler(**kwargs), z, device)


def test_most_comparisons_compared_draws_not_errors() -> None:
    """The comparisons above compare draws: only rows a mask empties (the holes family) may raise."""
    if len(ERRORS) < 100:
        pytest.skip("runs after the battery above, which fills ERRORS")
    assert sum(ERRORS) / len(ERRORS) < 0.05, f"{sum(ERRORS)} of {len(ERRORS)} comparisons were errors"
