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


def _full_count_bounds(t: int, q: float, alpha: float, rho: float) -> tuple[int, int]:
    """The O(t) reference: every count 0..t, no window."""
    from scipy.special import betaln

    a, b = q * rho, (1.0 - q) * rho
    s = np.arange(t + 1, dtype=np.float64)
    log_m = betaln(a + s, b + t - s) - betaln(a, b) - s * math.log(q) - (t - s) * math.log1p(-q)
    ok = np.flatnonzero(log_m < math.log(1.0 / alpha))
    return int(ok[0]), int(ok[-1])


@pytest.mark.parametrize("t", [1, 7, 60, 101, 999, 5_000, 120_000])
@pytest.mark.parametrize(("q", "rho"), [(0.99, 200.0), (0.5, 50.0), (0.9, 5.0)])
def test_windowed_count_bounds_equal_the_full_search(t: int, q: float, rho: float) -> None:
    assert count_bounds(t, q, 0.05, rho) == _full_count_bounds(t, q, 0.05, rho)


def test_quantile_cs_in_bins_keeps_bounded_memory_and_stays_valid() -> None:
    """Past ``exact_limit`` the values live in log bins; the bounds move to the bins' outer edges,
    so the binned interval contains the exact one (it can only widen) and still covers the p99."""
    rng = np.random.default_rng(11)
    xs = rng.lognormal(3.0, 0.6, 30_000)
    exact, binned = QuantileCS(0.99, 0.05), QuantileCS(0.99, 0.05, exact_limit=2_000, bin_width=0.005)
    for chunk in np.array_split(xs, 15):  # queried as a controller would, tick by tick
        exact.extend(chunk)
        binned.extend(chunk)
        e, b = exact.interval(), binned.interval()
        assert b.low <= e.low and b.high >= e.high
        assert b.high <= e.high * 1.006 + 1e-9 and b.low >= e.low / 1.006 - 1e-9  # within one bin
    assert binned.binned and not exact.binned and binned.n == exact.n == 30_000
    assert binned._bins is not None and len(binned._bins._counts) < 1_000 and binned._xs == []
    true_p99 = math.exp(3.0 + 0.6 * 2.3263478740408408)
    assert b.low <= true_p99 <= b.high
    assert abs(b.estimate - e.estimate) / e.estimate < 0.01
    neg = QuantileCS(0.5, 0.05, exact_limit=10)
    neg.extend([-5.0, -1.0, 0.0, 2.0, 3.0] * 40)
    iv = neg.interval()
    assert iv.low <= 0.0 <= iv.high and neg.binned
