"""Confidence sequences: they cover the truth at every time, shrink, and detect real regressions."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tunegate.engine.online import EmpiricalBernsteinCS, PairedDifference, QuantileCS, TwoSampleDifference
from tunegate.engine.online.quantile import count_bounds
from tunegate.engine.online.simulate import (
    simulate_canary,
    simulate_naive_paired,
    simulate_p99,
    simulate_paired,
)


def test_eb_cs_covers_the_mean_at_every_time() -> None:
    rng = np.random.default_rng(1)
    k, p = 400, 0.2
    cs = EmpiricalBernsteinCS(0.05, (k,))
    missed = np.zeros(k, dtype=bool)
    for _ in range(1500):
        cs.update((rng.random(k) < p).astype(float))
        missed |= (cs.low > p) | (cs.high < p)
    assert missed.mean() <= 0.05
    width = float(np.mean(cs.high - cs.low))
    assert 0.02 < width < 0.12            # it shrinks, but is honest about 1,500 observations


def test_eb_cs_adapts_to_low_variance() -> None:
    """A 1% rate gets a far tighter sequence than a 50% rate at the same n (empirical Bernstein)."""
    rng = np.random.default_rng(2)
    widths = []
    for p in (0.01, 0.5):
        cs = EmpiricalBernsteinCS(0.05)
        cs.extend((rng.random(3000) < p).astype(float))
        iv = cs.interval()
        assert iv.low <= p <= iv.high and iv.n == 3000
        widths.append(iv.high - iv.low)
    assert widths[0] < widths[1] / 3


def test_eb_cs_rejects_out_of_range_and_bad_alpha() -> None:
    with pytest.raises(ValueError):
        EmpiricalBernsteinCS(0.0)
    cs = EmpiricalBernsteinCS(0.05)
    with pytest.raises(ValueError):
        cs.update(1.5)
    assert cs.interval().n == 0 and cs.interval().low == 0.0 and cs.interval().high == 1.0


def test_mask_only_updates_selected_streams() -> None:
    cs = EmpiricalBernsteinCS(0.05, (3,))
    cs.update(np.array([1.0, 1.0, 1.0]), np.array([True, False, True]))
    assert cs.n.tolist() == [1, 0, 1]


def test_aa_paired_false_rollback_below_alpha_checked_every_pair_while_naive_fails() -> None:
    seq = simulate_paired(0.1, 0.1, n_streams=300, horizon=1500, alpha=0.05, seed=3)
    naive = simulate_naive_paired(0.1, 0.1, n_streams=300, horizon=1500, seed=3)
    assert seq.alarm_rate <= 0.05
    assert naive.alarm_rate > 0.10        # peeking at a fixed-n test: the failure mode we avoid


def test_aa_canary_false_rollback_below_alpha() -> None:
    r = simulate_canary(0.1, 0.1, share=0.2, n_streams=300, horizon=2000, alpha=0.05, seed=4)
    assert r.alarm_rate <= 0.05


def test_paired_detects_a_3_point_regression() -> None:
    r = simulate_paired(0.10, 0.13, n_streams=100, horizon=3000, alpha=0.05, coupling="shared", seed=5)
    assert r.alarm_rate >= 0.9
    assert r.quantile_time(0.5) < 1500


def test_paired_and_two_sample_intervals() -> None:
    pd, ts = PairedDifference(0.05), TwoSampleDifference(0.05)
    rng = np.random.default_rng(6)
    for _ in range(4000):
        b = float(rng.random() < 0.1)
        c = float(rng.random() < 0.4)
        pd.update(b, c)
        ts.update("base", b)
        ts.update("candidate", c)
    for iv in (pd.interval(), ts.interval()):
        assert iv.low <= 0.3 <= iv.high and iv.low > 0.2
    assert pd.n == 4000 and ts.n == 4000


def test_quantile_count_bounds_bracket_the_expected_count() -> None:
    lo, hi = count_bounds(10_000, 0.99, 0.05, 200.0)
    assert lo < 9900 < hi and hi - lo < 120
    assert count_bounds(0, 0.99, 0.05, 200.0) == (0, 0)


def test_quantile_cs_covers_p99_and_is_infinite_when_data_is_short() -> None:
    rng = np.random.default_rng(7)
    q = QuantileCS(0.99, 0.05)
    q.extend(rng.exponential(10.0, 50))
    assert q.interval().high == math.inf         # 50 samples cannot bound a p99 from above
    q.extend(rng.exponential(10.0, 6000))
    iv = q.interval()
    true_p99 = -10.0 * math.log(0.01)
    assert iv.low <= true_p99 <= iv.high


def test_p99_ratio_aa_quiet_and_regression_found() -> None:
    assert simulate_p99(1.0, n_streams=10, horizon=1500, alpha=0.05, check_every=25, seed=8).alarm_rate == 0.0
    assert simulate_p99(2.0, n_streams=5, horizon=3000, alpha=0.05, check_every=25, seed=9).alarm_rate == 1.0
