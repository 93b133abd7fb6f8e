"""Session 9 attack on the fidelity statistics against scipy: the normal tail the surprisal check prints."""

from __future__ import annotations

import numpy as np
import pytest
from faithful.fidelity.stats import normal_sf

stats = pytest.importorskip("scipy.stats")


def test_the_normal_tail_is_right_far_out() -> None:
    # 1 - cdf(z) cancelled: 4e-5 relative error at z = 7, 7% at z = 8, and 0 from 8.3 on
    zs = np.concatenate([np.linspace(-10, 10, 201), [7.0, 8.0, 8.3, 9.0, 20.0, 37.5]])
    for z in zs:
        assert normal_sf(float(z)) == pytest.approx(stats.norm.sf(z), rel=1e-12, abs=0.0)
    assert normal_sf(40.0) == 0.0 and normal_sf(-40.0) == 1.0
