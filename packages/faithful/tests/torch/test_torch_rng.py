"""Keyed uniforms computed with torch integer ops equal numpy's bit for bit (``==``, never allclose)."""

from __future__ import annotations

import numpy as np
import pytest
from faithful.errors import SamplingParameterError, ShapeMismatchError
from faithful.rng import KeyedRNG
from faithful.rng import bits_to_uniform as np_bits_to_uniform
from faithful.rng import splitmix64 as np_splitmix64
from hypothesis import given, settings
from hypothesis import strategies as st

torch = pytest.importorskip("torch")

from faithful.torch_rng import (  # noqa: E402
    bits_to_uniform,
    device_uniforms,
    splitmix64,
    to_int64,
    torch_uniforms,
)

BOUNDARY_SEEDS = [0, 1, -1, 2**63 - 1, 2**63, 2**64 - 1, 2**64, -(2**63), -(2**70) + 5, 2**100 + 17]
BOUNDARY_ROWS = [0, 1, -1, 2**62, 2**63 - 1, -(2**63), 511, -512]
BOUNDARY_STEPS = [0, 1, -1, 2**63 - 1, 2**64 - 1, -(2**63), 2**80 + 3]

int64s = st.integers(min_value=-(2**63), max_value=2**63 - 1)


def as_bits(values: np.ndarray) -> object:
    """uint64 numpy values as the int64 torch tensor holding the same bits."""
    return torch.from_numpy(values.view(np.int64).copy())


def assert_bit_identical(t: object, a: np.ndarray) -> None:
    got = t.cpu().numpy()  # type: ignore[attr-defined]
    assert got.dtype == a.dtype and got.shape == a.shape
    # compare the float64 bit patterns: == would also pass -0.0 vs 0.0
    np.testing.assert_array_equal(got.view(np.uint64), a.view(np.uint64))


def test_splitmix64_matches_numpy_on_random_and_extreme_words() -> None:
    words = np.random.default_rng(0).integers(0, 2**64, size=200_000, dtype=np.uint64, endpoint=False)
    words[:6] = [0, 1, 2**63 - 1, 2**63, 2**64 - 1, 0x9E3779B97F4A7C15]
    got = splitmix64(as_bits(words)).numpy().view(np.uint64)
    np.testing.assert_array_equal(got, np_splitmix64(words))


def test_bits_to_uniform_matches_numpy_including_both_ends() -> None:
    words = np.random.default_rng(1).integers(0, 2**64, size=100_000, dtype=np.uint64, endpoint=False)
    words[:4] = [0, 2**64 - 1, 2**63, (1 << 12) - 1]
    assert_bit_identical(bits_to_uniform(as_bits(words)), np_bits_to_uniform(words))
    ends = bits_to_uniform(torch.tensor([0, -1]))
    assert ends[0].item() == 2.0**-53 and ends[1].item() == 1 - 2.0**-53


@pytest.mark.parametrize("seed", BOUNDARY_SEEDS)
@pytest.mark.parametrize("step", BOUNDARY_STEPS)
def test_boundary_seeds_rows_and_steps(seed: int, step: int) -> None:
    rows = np.array(BOUNDARY_ROWS, dtype=np.int64)
    want = KeyedRNG(seed).uniforms(rows, step, 9)
    assert_bit_identical(torch_uniforms(seed, torch.from_numpy(rows), step, 9), want)
    # rows as a list and as numpy give the same numbers as a tensor
    assert_bit_identical(torch_uniforms(KeyedRNG(seed), rows.tolist(), step, 9), want)


@settings(max_examples=300, deadline=None)
@given(
    seed=st.integers(min_value=-(2**80), max_value=2**80),
    rows=st.lists(int64s, min_size=0, max_size=12),
    step=st.integers(min_value=-(2**70), max_value=2**70),
    n=st.integers(min_value=0, max_value=40),
)
def test_random_keys_are_bit_identical(seed: int, rows: list[int], step: int, n: int) -> None:
    r = np.array(rows, dtype=np.int64)
    assert_bit_identical(
        torch_uniforms(seed, torch.from_numpy(r), step, n), KeyedRNG(seed).uniforms(r, step, n)
    )


def test_the_patterns_the_samplers_use() -> None:
    """Large batches, one lane (inverse CDF) and vocab lanes (Gumbel-max), many steps, shuffled global rows."""
    gen = np.random.default_rng(7)
    for seed in (0, 123, 2024, int(gen.integers(0, 2**63))):
        rows = gen.permutation(4096).astype(np.int64)
        for step in (0, 1, 2, 63, 1000):
            assert_bit_identical(
                torch_uniforms(seed, torch.from_numpy(rows), step, 1), KeyedRNG(seed).uniforms(rows, step, 1)
            )
        vocab_rows = rows[:8]
        assert_bit_identical(
            torch_uniforms(seed, torch.from_numpy(vocab_rows), 5, 50_257),
            KeyedRNG(seed).uniforms(vocab_rows, 5, 50_257),
        )


def test_uint64_rows_above_int64_keep_their_bits_like_numpy() -> None:
    rows = np.array([2**63, 2**64 - 1, 5], dtype=np.uint64)
    assert_bit_identical(torch_uniforms(3, rows, 2, 3), KeyedRNG(3).uniforms(rows, 2, 3))


def test_inputs_are_not_modified_and_dtype_device_follow_rows() -> None:
    rows = torch.tensor([4, 2, 9], dtype=torch.int32)
    before = rows.clone()
    u = torch_uniforms(1, rows, 0, 2)
    assert torch.equal(rows, before)
    assert u.dtype == torch.float64 and u.device == rows.device and u.shape == (3, 2)
    words = torch.tensor([1, 2, 3])
    splitmix64(words)
    assert words.tolist() == [1, 2, 3]


def test_to_int64_reads_words_as_twos_complement() -> None:
    assert to_int64(0) == 0
    assert to_int64(2**63 - 1) == 2**63 - 1
    assert to_int64(2**63) == -(2**63)
    assert to_int64(2**64 - 1) == -1
    assert to_int64(-1) == -1
    assert to_int64(2**64 + 5) == 5


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"rows": [[0, 1]]}, ShapeMismatchError, "one-dimensional"),
        ({"rows": torch.zeros(2, 2, dtype=torch.long)}, ShapeMismatchError, "one-dimensional"),
        ({"rows": torch.tensor([0.5])}, ShapeMismatchError, "integers"),
        ({"rows": [0.5]}, ShapeMismatchError, "integers"),
        ({"n": -1}, SamplingParameterError, "`n`"),
        ({"n": True}, SamplingParameterError, "`n`"),
        ({"step": 1.5}, SamplingParameterError, "`step`"),
        ({"step": "1"}, SamplingParameterError, "`step`"),
        ({"rng": 1.0}, SamplingParameterError, "`seed`"),
        ({"rng": True}, SamplingParameterError, "`seed`"),
    ],
)
def test_bad_input_is_a_clear_error(kwargs: dict[str, object], error: type[Exception], match: str) -> None:
    args: dict[str, object] = {"rng": 0, "rows": [0, 1], "step": 0, "n": 1} | kwargs
    with pytest.raises(error, match=match):
        torch_uniforms(args["rng"], args["rows"], args["step"], args["n"])  # type: ignore[arg-type]


def test_device_uniforms_takes_every_rng_a_sampler_takes() -> None:
    rows = torch.tensor([3, 1])
    assert_bit_identical(device_uniforms(5, rows, 2, 3), KeyedRNG(5).uniforms([3, 1], 2, 3))
    assert_bit_identical(device_uniforms(KeyedRNG(5), rows, 2, 3), KeyedRNG(5).uniforms([3, 1], 2, 3))
    assert device_uniforms(None, rows, 2, 3).shape == (2, 3)

    class Edge:
        """A boundary source: the smallest uniform everywhere."""

        def uniforms(self, rows: object, step: int, n: int = 1) -> np.ndarray:
            return np.full((len(rows), n), 2.0**-53)  # type: ignore[arg-type]

    u = device_uniforms(Edge(), rows, 0, 4)
    assert u.dtype == torch.float64 and (u == 2.0**-53).all()
    with pytest.raises(SamplingParameterError, match="rng"):
        device_uniforms(np.random.default_rng(0), rows, 0)


@pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no CUDA device here (CI has none); CPU torch is tested"
)
def test_cuda_uniforms_equal_numpy() -> None:
    rows = torch.arange(-100, 4000, device="cuda")
    for seed in BOUNDARY_SEEDS:
        for step in (0, 1, 2**63 - 1):
            u = torch_uniforms(seed, rows, step, 7)
            assert u.device.type == "cuda"
            assert_bit_identical(u, KeyedRNG(seed).uniforms(np.arange(-100, 4000), step, 7))


def test_docstring_examples_run() -> None:
    import doctest

    import faithful.torch_rng

    result = doctest.testmod(faithful.torch_rng)
    assert result.attempted > 0 and result.failed == 0
