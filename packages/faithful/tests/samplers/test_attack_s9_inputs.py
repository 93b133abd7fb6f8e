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
