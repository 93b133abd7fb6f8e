"""The torch backend's parts: the sort-free thresholds against brute force, no host sync, the draws'
distribution (G-tests against exact q), and Hugging Face generate sampling on the device."""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np
import pytest
from faithful.samplers import greedy, make_sampler
from scipy import stats

from .conftest import DEVICES, HISTORY, LOGQ_ATOL, logits_family

torch = pytest.importorskip("torch")

from faithful.torch_backend import (  # noqa: E402
    distribution_tensor,
    sample_tensor,
    select,
)
from faithful.torch_backend.select import kth_largest, mass_threshold, ordered_keys, value_of_key  # noqa: E402
from torch.overrides import TorchFunctionMode  # noqa: E402


def brute_threshold(keys: np.ndarray, w: np.ndarray, need: float) -> float:
    """The largest key value whose {keys >= value} mass reaches need (else the smallest key with weight)."""
    best = None
    for t in np.unique(keys):
        if w[keys >= t].sum() >= need:
            best = t
    return float(best) if best is not None else float(keys[w > 0].min())


# the compacted search's late passes: a dense histogram per row, or only each row's non-empty buckets
LATE_PASSES = {"dense": 10**9, "sparse": 0}


@pytest.mark.parametrize(
    ("compact", "late"),
    [(True, "dense"), (True, "sparse"), (False, "dense")],
    ids=["compacted (cpu), dense late passes", "compacted (cpu), sparse late passes", "masked (cuda path)"],
)
@pytest.mark.parametrize("seed", range(6))
def test_mass_threshold_equals_brute_force(
    seed: int, compact: bool, late: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(select, "_DENSE_PER_TOKEN", LATE_PASSES[late])
    rng = np.random.default_rng(seed)
    b, v = 12, 300
    keys = rng.integers(-6, 6, (b, v)) * [0.25, 1e-3, 1e9][seed % 3] + (seed % 2) * 0.5  # many ties
    keys[rng.random((b, v)) < 0.1] = -np.inf
    keys[0, :3] = [np.inf, -0.0, 0.0]
    w = rng.random((b, v)) * (rng.random((b, v)) < 0.8)
    w[:, 0] += 0.1
    need = w.sum(axis=1) * rng.uniform(0.05, 1.0, b)
    need[1] = w[1].sum() * (1 + 1e-12)  # rounding: more than the row holds -> every weighted token kept
    got = mass_threshold(torch.from_numpy(keys), torch.from_numpy(w), torch.from_numpy(need), compact=compact)
    got = got.numpy()
    want = [brute_threshold(keys[i], w[i], need[i]) for i in range(b)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(4))
def test_sparse_late_buckets_are_the_dense_histogram_bit_for_bit(seed: int) -> None:
    """The two forms of a late pass give the same digit and the same float64 mass above it, to the bit,
    also where ``need`` sits on a partial sum (where a different grouping of the sums would round the
    other way), for rows with no token left under the prefix, zero masses, and a NaN or negative need."""
    rng = np.random.default_rng(seed)
    n = 4096
    for _ in range(20):
        b = int(rng.integers(1, 30))
        per_row = rng.integers(0, [2, 8, 300][seed % 3], b)  # some rows gather no token at all
        rows = torch.from_numpy(np.repeat(np.arange(b), per_row))
        t = rows.shape[0]
        digit = torch.from_numpy(rng.integers(0, n, t) // rng.choice([1, 64, 1024]))  # ties in buckets
        inside = torch.from_numpy(rng.random(t) < 0.8)
        w = rng.random(t) * rng.choice([1.0, 1e-300, 1e300]) * (rng.random(t) < 0.9)
        w[rng.random(t) < 0.1] = -0.0
        above = torch.from_numpy(rng.random(b) * rng.choice([0.0, 1.0]))
        dense = torch.zeros(b * (n + 1), dtype=torch.float64)
        dense.scatter_add_(0, rows * (n + 1) + torch.where(inside, digit, n), torch.from_numpy(w))
        hist = dense.view(b, n + 1)[:, :n]
        # need on a partial sum of the buckets from the top, exactly or one rounding either side
        cum = (above[:, None] + hist.flip(1).cumsum(1)).numpy()
        need = cum[np.arange(b), rng.integers(0, n, b)] * rng.choice([1.0, 1 - 2**-52, 1 + 2**-52], b)
        need[rng.random(b) < 0.1] = np.nan
        need[rng.random(b) < 0.1] = -1.0
        want = select._crossing_bucket(hist, above, torch.from_numpy(need))
        got = select._sparse_crossing_bucket(
            rows, digit, inside, torch.from_numpy(w), n, above, torch.from_numpy(need)
        )
        assert torch.equal(got[0], want[0])
        assert torch.equal(got[1].view(torch.int64), want[1].view(torch.int64))  # same bits (NaN too)


class LargestTensor(TorchFunctionMode):
    """Records the most elements of any tensor a torch call returns while active."""

    def __init__(self) -> None:
        super().__init__()
        self.most = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        out = func(*args, **(kwargs or {}))
        if isinstance(out, torch.Tensor):
            self.most = max(self.most, out.numel())
        return out


@pytest.mark.parametrize("v", [1, 7, 300, 2000])
def test_the_compacted_search_stays_within_a_few_rows_of_memory(v: int) -> None:
    """No tensor of the threshold search outgrows ``B x max(17, 8 V)``: a late pass used to make a
    ``B x 4097`` histogram whatever the vocabulary (3.3 GB a pass at 100,000 x 7: the G-tests below
    took 15 minutes)."""
    b = 64
    z = torch.from_numpy(np.random.default_rng(v).standard_normal((b, v)))
    w = torch.exp(z)
    with LargestTensor() as rec:
        tau = mass_threshold(z, w, w.sum(dim=1) * 0.7, compact=True)
    assert rec.most <= b * max(17, 8 * v) + 1, rec.most
    want = [brute_threshold(z[i].numpy(), w[i].numpy(), float(w[i].sum() * 0.7)) for i in range(b)]
    np.testing.assert_array_equal(tau.numpy(), want)


def test_ordered_keys_keep_the_float_order() -> None:
    x = torch.tensor(
        [-np.inf, -1e308, -1.0, -5e-324, -0.0, 0.0, 5e-324, 1.0, 1e308, np.inf], dtype=torch.float64
    )
    k = ordered_keys(x)
    assert (k[1:] >= k[:-1]).all() and k[4] == k[5]  # -0.0 and 0.0 are one key
    assert torch.equal(value_of_key(k)[x != 0], x[x != 0])


def test_kth_largest_equals_partition() -> None:
    z = np.random.default_rng(1).integers(0, 7, (9, 50)).astype(np.float64)
    z[0, :45] = -np.inf
    for k in (1, 3, 10, 50, 51):
        want = np.sort(z, axis=1)[:, -k] if k <= 50 else np.full(9, -np.inf)
        np.testing.assert_array_equal(kth_largest(torch.from_numpy(z), k).numpy(), want)


# ---------------------------------------------------------------- no host sync

# what makes the host wait for the device (or reads a value back): none may appear in a step
_SYNCING = {
    "item",
    "tolist",
    "cpu",
    "numpy",
    "__bool__",
    "__int__",
    "__float__",
    "__index__",
    "nonzero",
    "unique",
    "host value",
}
_SYNCING_FUNCS = {torch.nonzero, torch.masked_select, torch.unique, torch.Tensor.nonzero}


class RecordCalls(TorchFunctionMode):
    """Records every torch function and tensor method called while active."""

    def __init__(self) -> None:
        super().__init__()
        self.names: list[str] = []
        self.bool_indexing = 0

    def __torch_function__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        name = getattr(func, "__name__", str(func))
        self.names.append(name)
        if func in _SYNCING_FUNCS:
            self.names.append("nonzero")
        if name in ("__getitem__", "__setitem__") and len(args) > 1:
            index = args[1] if isinstance(args[1], tuple) else (args[1],)
            if any(isinstance(i, torch.Tensor) and i.dtype == torch.bool for i in index):
                self.bool_indexing += 1  # a boolean mask index has a data-dependent shape: a sync
        if name == "__setitem__" and len(args) > 2 and not isinstance(args[2], torch.Tensor):
            # x[index] = 1.0 copies the host value to the device (a blocking copy on CUDA)
            self.names.append("host value")
        targets = [str(a) for a in list(args[1:]) + list((kwargs or {}).values())]
        if name == "to" and "cpu" in targets and args[0].device.type != "cpu":
            self.names.append("cpu")  # a copy to the host (a no-op for a tensor already there)
        return func(*args, **(kwargs or {}))


def test_the_recorder_sees_a_sync() -> None:
    with RecordCalls() as rec:
        torch.ones(2).sum().item()
        _ = torch.ones(3)[torch.tensor([True, False, True])]
        torch.zeros(3)[torch.tensor([1])] = 1.0
    assert "item" in rec.names and "host value" in rec.names and rec.bool_indexing == 1


EVERYTHING = {
    "repetition_penalty": 1.2,
    "presence_penalty": 0.3,
    "frequency_penalty": 0.1,
    "dry_multiplier": 0.8,
    "logit_bias": {3: 1.0},
    "no_repeat_ngram_size": 3,
    "forbidden_tokens": (5,),
    "temperature": 0.8,
    "top_n_sigma": 3.0,
    "top_k": 200,
    "top_p": 0.95,
    "min_p": 0.01,
    "typical_p": 0.95,
    "epsilon": 1e-5,
    "eta": 1e-5,
    "xtc_probability": 0.5,
    "xtc_threshold": 0.05,
}


@pytest.mark.parametrize("rows_kind", ["none", "numpy", "tensor"])
@pytest.mark.parametrize("draw", ["inverse_cdf", "gumbel", "argmax", "temperature 0"])
def test_a_step_never_reads_the_device(draw: str, rows_kind: str, monkeypatch: pytest.MonkeyPatch) -> None:
    # the path a CUDA device takes: on CPU, mass_threshold compacts with nonzero (no sync to avoid there)
    monkeypatch.setattr(select, "COMPACT_ON_CPU", False)
    if draw == "argmax":
        s = greedy(backend="torch")
    elif draw == "temperature 0":
        s = make_sampler(backend="torch", **{**EVERYTHING, "temperature": 0.0})
    else:
        s = make_sampler(draw=draw, backend="torch", **EVERYTHING)
    z = torch.from_numpy(logits_family("random", seed=4))
    rows: Any = {"none": None, "numpy": np.arange(16), "tensor": torch.arange(16)}[rows_kind]
    with RecordCalls() as rec:
        res = sample_tensor(s, z, rng=5, step=2, rows=rows, history=HISTORY, return_q=True, check=False)
        distribution_tensor(s, z, rng=5, step=2, rows=rows, history=HISTORY, check=False)
    syncs = sorted(set(rec.names) & _SYNCING)
    assert not syncs and rec.bool_indexing == 0, syncs
    assert len(rec.names) > (10 if draw == "argmax" else 100)  # the recorder did see the step
    assert res.status.eq(0).all()


@pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device")
@pytest.mark.parametrize("rows_kind", ["none", "numpy", "tensor"])
@pytest.mark.parametrize("draw", ["inverse_cdf", "gumbel"])
def test_a_cuda_step_makes_no_synchronizing_call(rows_kind: str, draw: str) -> None:  # pragma: no cover - GPU
    s = make_sampler(draw=draw, backend="torch", **EVERYTHING)
    z = torch.from_numpy(logits_family("random", seed=4)).cuda()
    rows: Any = {"none": None, "numpy": np.arange(16), "tensor": torch.arange(16, device="cuda")}[rows_kind]
    sample_tensor(s, z, rng=5, step=2, rows=rows, history=HISTORY, check=False)  # warm up
    torch.cuda.synchronize()
    torch.cuda.set_sync_debug_mode("error")
    try:
        res = sample_tensor(s, z, rng=5, step=2, rows=rows, history=HISTORY, check=False)
    finally:
        torch.cuda.set_sync_debug_mode("default")
    want = make_sampler(draw=draw, **EVERYTHING)(
        logits_family("random", seed=4), rng=5, step=2, history=HISTORY
    )
    np.testing.assert_array_equal(res.tokens.cpu().numpy(), want.tokens)


# ---------------------------------------------------------------- the draws' distribution

# 2e5 draws: a G-test at p < 1e-4 then catches one token's probability off by 0.01 with probability
# >= 0.9998 in every case below (at 1e5 it was 0.88 to 0.99 by case; see g_test_power)
GTEST_DRAWS = 200_000
GTEST_ALPHA = 1e-4


def g_test_power(q: np.ndarray, n: int, error: float = 0.01, alpha: float = GTEST_ALPHA) -> float:
    """The G-test's power with ``n`` draws at level ``alpha`` when one token's probability is off by
    ``error`` (the others scaled to make room), on the token where that is hardest to see.

    G is asymptotically noncentral chi-square, ``k - 1`` degrees of freedom, noncentrality
    ``n sum((q' - q)**2 / q) = n error**2 / (q_i (1 - q_i))``: smallest for the ``q_i`` nearest 1/2.
    (Checked by simulation on the 10-token temperature case: 0.889 simulated, 0.881 here, at 1e5.)
    """
    q = q[q > 0] / q.sum()
    df = q.size - 1
    noncentrality = n * error**2 / (q * (1 - q)).max()
    return float(stats.ncx2.sf(stats.chi2.isf(alpha, df), df, noncentrality))


GTEST_CASES = [
    ("top-p on ties", {"top_p": 0.6}, np.log(np.array([0.2, 0.2, 0.2, 0.15, 0.1, 0.1, 0.05]))),
    (
        "temperature+min-p",
        {"temperature": 0.7, "min_p": 0.1},
        np.log(np.array([0.4, 0.3, 0.1, 0.1, 0.06, 0.04])),
    ),
    ("typical", {"typical_p": 0.7}, np.log(np.array([0.35, 0.25, 0.2, 0.1, 0.05, 0.05]))),
    ("xtc", {"xtc_probability": 0.5, "xtc_threshold": 0.1}, np.log(np.array([0.4, 0.3, 0.2, 0.06, 0.04]))),
    ("gumbel top-k", {"draw": "gumbel", "top_k": 4}, np.log(np.array([0.3, 0.25, 0.2, 0.15, 0.1]))),
]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("label", "kwargs", "z"), GTEST_CASES, ids=[c[0] for c in GTEST_CASES])
def test_draws_fit_the_exact_q(label: str, kwargs: dict[str, Any], z: np.ndarray, device: str) -> None:
    s = make_sampler(backend="torch", **kwargs)
    logits = torch.from_numpy(np.repeat(z[None, :], GTEST_DRAWS, axis=0)).to(device)
    rows = torch.arange(GTEST_DRAWS, device=device)
    tokens = s(logits, rng=2024, step=1, rows=rows).tokens.cpu().numpy()
    # the exact expected counts: the sum of each row's q (XTC's q depends on the row's coin)
    q = s.distribution(logits, rng=2024, step=1, rows=rows).sum(dim=0).cpu().numpy()
    counts = np.bincount(tokens, minlength=z.size)
    assert counts[q == 0].sum() == 0  # never a token outside the support
    keep = q > 0
    assert g_test_power(q, GTEST_DRAWS) > 0.99  # the test below can fail: it sees a 1% error
    g = stats.power_divergence(counts[keep], q[keep], lambda_="log-likelihood")
    assert g.pvalue > GTEST_ALPHA, (label, counts, q)


def test_the_g_test_catches_a_one_percent_error() -> None:
    z = np.log(np.array([0.3, 0.25, 0.2, 0.15, 0.1]))
    s = make_sampler(backend="torch")
    logits = torch.from_numpy(np.repeat(z[None, :], GTEST_DRAWS, axis=0))
    tokens = s(logits, rng=7, step=0, rows=torch.arange(GTEST_DRAWS)).tokens.numpy()
    counts = np.bincount(tokens, minlength=5)
    q = np.exp(z)
    assert stats.power_divergence(counts, q * GTEST_DRAWS, lambda_="log-likelihood").pvalue > GTEST_ALPHA
    one_point = q * (1 - 0.01 / (1 - q[0]))  # token 0 (the nearest 1/2: the hardest) off by 0.01
    one_point[0] = q[0] + 0.01
    for wrong in (q * np.array([1.04, 1, 1, 1, 1]), one_point):
        wrong = wrong / wrong.sum() * GTEST_DRAWS
        g = stats.power_divergence(counts, wrong, lambda_="log-likelihood")
        assert g.pvalue < GTEST_ALPHA
    assert g_test_power(q, GTEST_DRAWS) > 0.999  # and not by luck at this seed


# ---------------------------------------------------------------- Hugging Face generate on the device


@pytest.fixture(scope="module")
def tiny() -> Any:
    """The tiny GPT-2 of the decoder tests (tests/decoders/test_hf.py), loaded by path."""
    pytest.importorskip("transformers")
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "decoders" / "test_hf.py"
    spec_ = importlib.util.spec_from_file_location("_faithful_tb_tiny", path)
    assert spec_ is not None and spec_.loader is not None
    module = importlib.util.module_from_spec(spec_)
    sys.modules[spec_.name] = module
    spec_.loader.exec_module(module)
    return module


@pytest.mark.parametrize(
    "spec", ["temperature:0.8+top-p:0.9", "repetition-penalty:1.3+top-k:10", "gumbel", "sample"]
)
def test_generate_on_the_device_takes_the_same_tokens(spec: str, tiny: Any) -> None:
    from faithful.hf import generate

    model = tiny.tiny_gpt2(0)
    eos = tiny.pick_eos(model, tiny.PROMPTS, 3)
    common = {"spec": spec, "seed": 5, "max_new_tokens": 8, "num_return_sequences": 2, "eos_token_id": eos}
    host = generate(model, tiny.PROMPTS, on_device=False, **common)
    device = generate(model, tiny.PROMPTS, on_device=True, **common)
    assert device.sequences_list() == host.sequences_list()
    np.testing.assert_allclose(device.processed_logq, host.processed_logq, rtol=0, atol=LOGQ_ATOL)
    np.testing.assert_allclose(device.raw_logq, host.raw_logq, rtol=0, atol=1e-9)


@pytest.mark.parametrize("device", DEVICES)
def test_ancestral_sampling_with_a_torch_sampler_reads_its_tensors_back(device: str, tiny: Any) -> None:
    from faithful.decode import ancestral_sample
    from faithful.models.hf import HFCausalLM
    from faithful.samplers import parse_sampler_spec

    eos = tiny.pick_eos(tiny.tiny_gpt2(0), tiny.PROMPTS, 3)
    spec = "temperature:0.8+top-k:20"
    on_device = HFCausalLM(tiny.tiny_gpt2(0).to(device), eos_token_id=eos, pad_token_id=eos)
    ours = ancestral_sample(
        on_device, tiny.PROMPTS, 6, sampler=parse_sampler_spec(spec, backend="torch"), rng=3
    )
    on_host = HFCausalLM(tiny.tiny_gpt2(0), eos_token_id=eos, pad_token_id=eos)
    ref = ancestral_sample(on_host, tiny.PROMPTS, 6, sampler=parse_sampler_spec(spec), rng=3)
    assert ours.sequences() == ref.sequences()  # the numpy reference's tokens
    np.testing.assert_allclose(ours.proposal_logprobs, ref.proposal_logprobs, rtol=0, atol=1e-9)


def _sampler_cases() -> Any:
    """The numpy sampler tests' goodness-of-fit cases (tests/samplers/test_samplers.py), loaded by path."""
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "samplers" / "test_samplers.py"
    spec_ = importlib.util.spec_from_file_location("_faithful_tb_sampler_cases", path)
    assert spec_ is not None and spec_.loader is not None
    module = importlib.util.module_from_spec(spec_)
    sys.modules[spec_.name] = module
    spec_.loader.exec_module(module)
    return module


SAMPLER_CASES = _sampler_cases()


@pytest.mark.parametrize(
    ("label", "kwargs", "q"), SAMPLER_CASES.GOF_CASES, ids=[c[0] for c in SAMPLER_CASES.GOF_CASES]
)
def test_the_numpy_goodness_of_fit_cases_on_the_torch_backend(
    label: str, kwargs: dict[str, Any], q: Any
) -> None:
    """The sampler battery's exact-q cases, each with 2e5 draws on CPU torch (numpy's run 1e6)."""
    want = SAMPLER_CASES.expected_q(kwargs, q)
    z = torch.from_numpy(np.repeat(SAMPLER_CASES.Z[None, :], GTEST_DRAWS, axis=0))
    s = make_sampler(backend="torch", **kwargs)
    np.testing.assert_allclose(s.distribution(z[:1])[0].numpy(), want, rtol=1e-12, atol=1e-15)
    res = s(z, rng=zlib.crc32(label.encode()), step=3)  # a fixed seed per case (str hash varies by run)
    counts = np.bincount(res.tokens.numpy(), minlength=want.size)
    assert counts[want == 0].sum() == 0
    keep = want > 0
    if keep.sum() > 1:
        assert g_test_power(want, GTEST_DRAWS) > 0.99  # the test below can fail: it sees a 1% error
        g = stats.power_divergence(counts[keep], want[keep] * GTEST_DRAWS, lambda_="log-likelihood")
        assert g.pvalue > GTEST_ALPHA, (label, counts)
    with np.errstate(divide="ignore"):
        np.testing.assert_allclose(res.logprobs.numpy(), np.log(want)[res.tokens.numpy()], rtol=1e-12)


def test_on_device_must_be_a_bool_or_none() -> None:
    pytest.importorskip("transformers")
    from faithful.errors import SamplingParameterError
    from faithful.hf import FaithfulLogitsProcessor

    with pytest.raises(SamplingParameterError, match="on_device"):
        FaithfulLogitsProcessor("sample", seed=0, on_device="yes")  # type: ignore[arg-type]
