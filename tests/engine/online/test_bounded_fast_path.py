"""The single-stream fast path of EmpiricalBernsteinCS (Python floats, used by the gateway's loop for
every scored pair) gives the numpy path's sequence (to rounding: libm's and numpy's log1p may differ
in the last bit)."""

from __future__ import annotations

import numpy as np
import pytest

from tunegate.engine.online.bounded import EmpiricalBernsteinCS


@pytest.mark.parametrize("rate", [0.02, 0.5])
def test_scalar_fast_path_equals_the_numpy_path(rate: float) -> None:
    rng = np.random.default_rng(7)
    xs = (rng.random(2000) < rate).astype(float) * rng.choice([1.0, 0.5], 2000)
    fast, slow = EmpiricalBernsteinCS(0.05), EmpiricalBernsteinCS(0.05)
    for x in xs:
        fast.update(float(x))                      # fast path: a Python float, mask True
        slow.update(np.asarray(x), np.bool_(True))  # numpy path
        assert float(fast.low) == pytest.approx(float(slow.low), abs=1e-12)
        assert float(fast.high) == pytest.approx(float(slow.high), abs=1e-12)
    assert int(fast.n) == int(slow.n) == 2000 and float(fast.mean) == float(slow.mean)
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fast.update(1.5)
