"""Session 9 attack: row ids that are no int64 ids are refused with what was wrong (was "got shape (3,)")."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from faithful.errors import ShapeMismatchError
from faithful.samplers import make_sampler

torch = pytest.importorskip("torch")

Z = np.random.default_rng(0).standard_normal((3, 6))


@pytest.mark.parametrize(
    ("rows", "dtype"),
    [([0.0, 1.0, 2.0], "float64"), ([2**70, 0, 1], "object"), ([True, False, True], "bool")],
)
@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_rows_that_are_no_int_ids_name_their_dtype(rows: list[Any], dtype: str, backend: str) -> None:
    z = torch.from_numpy(Z) if backend == "torch" else Z
    with pytest.raises(ShapeMismatchError, match=f"got shape \\(3,\\) of dtype {dtype}"):
        make_sampler(top_p=0.9, backend=backend)(z, rng=1, rows=rows)


def test_a_float_row_tensor_names_its_dtype() -> None:
    with pytest.raises(ShapeMismatchError, match=r"of dtype torch\.float32"):
        make_sampler(backend="torch")(torch.from_numpy(Z), rng=1, rows=torch.arange(3).float())


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="no extended long double")
@pytest.mark.parametrize("kernels", ["numpy", "numba", "auto"])
@pytest.mark.parametrize("kw", [{"top_p": 0.9}, {"top_k": 2}, {"min_p": 0.1}, {}])
def test_logits_past_float64_are_read_as_float64_on_every_path(kernels: str, kw: dict[str, Any]) -> None:
    from faithful.errors import InvalidLogitsError
    from faithful.kernels import available

    if kernels == "numba" and not available():
        pytest.skip("numba is not installed")
    big = np.longdouble(1e300) * np.longdouble(1e10)  # finite in float128, +-inf in float64
    z = np.array([[0.0, 1.0, 2.0], [0.0, 1.0, 2.0]], dtype=np.longdouble)
    z[0, 1] = big  # +inf in float64: the reference refuses the row
    with pytest.raises(InvalidLogitsError):  # was token 2 (or -1) with a NaN log q on kernels="numpy"
        make_sampler(**kw, kernels=kernels)(z, rng=1)
    z[0, 1] = -big  # -inf in float64: probability 0, as the reference reads it
    ref = make_sampler(**kw, fast=False)(z, rng=1, return_q=True)
    got = make_sampler(**kw, kernels=kernels)(z, rng=1, return_q=True)
    np.testing.assert_array_equal(got.tokens, ref.tokens)
    assert got.q is not None and ref.q is not None and got.q[0, 1] == 0.0
    np.testing.assert_allclose(got.logprobs, ref.logprobs, rtol=1e-12)


@pytest.mark.skipif(np.finfo(np.longdouble).max <= np.finfo(np.float64).max, reason="no extended long double")
def test_greedy_reads_logits_past_float64_as_the_reference_does() -> None:
    from faithful.errors import InvalidLogitsError
    from faithful.samplers import greedy

    z = np.array([[0.0, 1.0, 2.0]], dtype=np.longdouble)
    z[0, 1] = np.longdouble(1e300) * np.longdouble(1e10)
    with pytest.raises(InvalidLogitsError):
        greedy()(z, return_q=True)
    with pytest.raises(InvalidLogitsError):  # was token 1
        greedy()(z)
