"""Statistics primitives against references: scipy, hand-computed corrections, known binomial values."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from tunegate.engine.stats.bootstrap import bootstrap_means, group_sums, poisson_weights
from tunegate.engine.stats.inference import (
    adjust,
    benjamini_hochberg,
    clopper_pearson,
    cohort_variance,
    holm,
    mcnemar_exact,
    one_sided_p,
    paired_bootstrap_ci,
    rows_needed,
    wilcoxon_p,
    zero_event_halfwidth,
)

# ---------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("kind", ["normal", "ternary"])
def test_bootstrap_ci_close_to_scipy_percentile(kind: str) -> None:
    rng = np.random.default_rng(7)
    # continuous deltas, or paired pass/fail deltas in {-1, 0, 1}
    d = rng.normal(0.1, 1.0, 200) if kind == "normal" else rng.choice([-1.0, 0.0, 0.0, 0.0, 1.0], 120)
    lo, hi = paired_bootstrap_ci(d, n_resamples=20_000, seed=1)
    ref = stats.bootstrap((d,), np.mean, n_resamples=20_000, method="percentile", rng=0).confidence_interval
    width = ref.high - ref.low
    # Poisson vs multinomial resampling and Monte Carlo error: a few percent of the width.
    assert abs(lo - ref.low) < 0.06 * width
    assert abs(hi - ref.high) < 0.06 * width


def test_bootstrap_matrix_shares_resamples_and_is_deterministic() -> None:
    rng = np.random.default_rng(3)
    d = rng.normal(0, 1, (3, 150))
    lo, hi = paired_bootstrap_ci(d, seed=5)
    assert isinstance(lo, np.ndarray) and isinstance(hi, np.ndarray) and lo.shape == (3,)
    for j in range(3):  # each metric gets exactly the resamples a 1-D call would
        lo_j, hi_j = paired_bootstrap_ci(d[j], seed=5)
        assert lo_j == pytest.approx(lo[j], abs=1e-5) and hi_j == pytest.approx(hi[j], abs=1e-5)
    again = paired_bootstrap_ci(d, seed=5)
    assert np.array_equal(again[0], lo) and np.array_equal(again[1], hi)
    other = paired_bootstrap_ci(d, seed=6)
    assert not np.array_equal(other[0], lo)


def test_bootstrap_skips_nan_rows() -> None:
    rng = np.random.default_rng(4)
    d = rng.normal(0.5, 1, 300)
    with_nan = d.copy()
    with_nan[::3] = np.nan
    lo, hi = paired_bootstrap_ci(with_nan, seed=2)
    ref_lo, ref_hi = paired_bootstrap_ci(d[np.isfinite(with_nan)], seed=2)
    assert math.isfinite(lo) and math.isfinite(hi)
    assert lo == pytest.approx(ref_lo, abs=0.05) and hi == pytest.approx(ref_hi, abs=0.05)


def test_cluster_bootstrap_widens_ci_with_correlated_clusters() -> None:
    rng = np.random.default_rng(11)
    clusters = np.repeat(np.arange(40), 25)  # 40 source documents, 25 questions each
    d = rng.normal(0, 0.5, 40)[clusters] + rng.normal(0, 0.1, clusters.size)
    lo, hi = paired_bootstrap_ci(d, seed=0)
    clo, chi = paired_bootstrap_ci(d, seed=0, clusters=[f"doc{c}" for c in clusters])
    assert (chi - clo) > 3 * (hi - lo)  # design effect ~ sqrt(1 + 24 * 0.96) ~ 5


def test_group_sums_match_direct_weighted_sums() -> None:
    """Overlapping cohorts (a row with two tags) and the overall group from one weight matrix."""
    rng = np.random.default_rng(2)
    n = 50
    x = rng.random((n, 3))
    mem = np.zeros((n, 3), dtype=bool)
    mem[:, 0] = True
    mem[:30, 1] = True
    mem[20:, 2] = True  # rows 20..29 are in both cohorts
    sums = group_sums(x, mem, n_resamples=200, seed=9)
    assert sums.shape == (200, 3, 3)
    # the overall group is the sum over its members; cohort sums respect membership
    assert np.all(sums[:, 1, :] <= sums[:, 0, :] + 1e-4)
    means = bootstrap_means(x.T, mem, n_resamples=4000, seed=1)
    for g in range(3):
        assert means[:, g, :].mean(axis=0) == pytest.approx(x[mem[:, g]].mean(axis=0), abs=0.02)


def test_many_distinct_tag_sets_use_the_gather_path() -> None:
    rng = np.random.default_rng(8)
    n, g = 400, 10
    mem = rng.random((n, g)) < 0.4  # ~2^10 distinct tag sets
    mem[:, 0] = True
    x = rng.random((n, 2))
    means = bootstrap_means(x.T, mem, n_resamples=3000, seed=3)
    for c in range(g):
        assert np.nanmean(means[:, c, 0]) == pytest.approx(x[mem[:, c], 0].mean(), abs=0.02)


def test_poisson_weights_have_mean_and_variance_one() -> None:
    w = poisson_weights(np.random.default_rng(0), (400, 2500))
    assert w.dtype == np.float32
    assert w.mean() == pytest.approx(1.0, abs=0.005)
    assert w.var() == pytest.approx(1.0, abs=0.01)
    assert np.mean(w == 0) == pytest.approx(math.exp(-1), abs=0.005)


# ---------------------------------------------------------------- tests


def test_mcnemar_exact_known_values() -> None:
    # 10 vs 2 discordant pairs: 2 * P(X <= 2 | 12, 0.5) = 2 * 79 / 4096
    assert mcnemar_exact(10, 2) == pytest.approx(158 / 4096)
    assert mcnemar_exact(2, 10) == pytest.approx(158 / 4096)
    assert mcnemar_exact(5, 5) == 1.0
    assert mcnemar_exact(0, 0) == 1.0
    assert mcnemar_exact(6, 0, alternative="greater") == pytest.approx(1 / 64)
    assert mcnemar_exact(0, 6, alternative="less") == pytest.approx(1 / 64)
    assert mcnemar_exact(0, 6, alternative="greater") == 1.0
    for b, c in [(13, 4), (30, 18), (1, 9)]:
        assert mcnemar_exact(b, c) == pytest.approx(stats.binomtest(b, b + c, 0.5).pvalue)


def test_wilcoxon_zero_handling_and_agreement_with_scipy() -> None:
    assert wilcoxon_p(np.zeros(40)) == 1.0
    assert wilcoxon_p(np.array([])) == 1.0
    rng = np.random.default_rng(5)
    for n in (30, 400):
        d = np.round(rng.normal(0.1, 0.5, n), 1)
        d[: n // 4] = 0.0
        for alt in ("two-sided", "greater", "less"):
            ref = stats.wilcoxon(d, zero_method="zsplit", alternative=alt).pvalue
            assert wilcoxon_p(d, alternative=alt) == pytest.approx(ref, rel=1e-9)
    d = np.r_[rng.normal(0.3, 0.2, 100), np.nan, np.nan]
    assert wilcoxon_p(d) == pytest.approx(stats.wilcoxon(d[:100], zero_method="zsplit").pvalue)


def test_holm_and_bh_hand_computed() -> None:
    p = [0.01, 0.04, 0.03, 0.005]
    # Holm: sorted .005*4=.02, .01*3=.03, .03*2=.06, .04*1=.04 -> running max .06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # BH: .005*4/1=.02, .01*4/2=.02, .03*4/3=.04, .04*4/4=.04 -> running min from the top
    assert benjamini_hochberg(p) == pytest.approx([0.02, 0.04, 0.04, 0.02])
    # statsmodels' documented example values for Holm / BH
    p2 = [0.001, 0.008, 0.039, 0.041, 0.042, 0.06, 0.074, 0.205]
    assert holm(p2) == pytest.approx([0.008, 0.056, 0.234, 0.234, 0.234, 0.234, 0.234, 0.234])
    assert benjamini_hochberg(p2) == pytest.approx([0.008, 0.032, 0.0672, 0.0672, 0.0672, 0.08, 0.0845714, 0.205])
    assert adjust([0.5, 0.9], "bh") == pytest.approx([0.9, 0.9])
    with pytest.raises(ValueError):
        adjust([0.1], "bonferroni")  # type: ignore[arg-type]


def test_corrections_skip_missing_and_accept_weights() -> None:
    out = holm([0.01, None, 0.04])
    assert math.isnan(out[1])
    assert out[[0, 2]] == pytest.approx([0.02, 0.04])
    assert holm([0.01, 0.02], weights=[1, 1]) == pytest.approx(holm([0.01, 0.02]))
    # weighted Holm, weights .75/.25: q = p/w = (.01333, .08); step 1 x1, step 2 x.25 -> .02
    assert holm([0.01, 0.02], weights=[0.75, 0.25]) == pytest.approx([0.04 / 3, 0.02])
    # weighted BH, weights mean 1 (1.5, .5): q = (.00667, .04); BH x2/1, x2/2 -> (.01333, .04)
    assert benjamini_hochberg([0.01, 0.02], weights=[3, 1]) == pytest.approx([0.04 / 3, 0.04])
    with pytest.raises(ValueError):
        holm([0.1, 0.2], weights=[1, 0])


def test_rows_needed_normal_approximation() -> None:
    z = stats.norm.ppf(0.975) + stats.norm.ppf(0.8)
    assert rows_needed(0.1, 1.0, 0.0, alpha=0.025) == math.ceil((z / 0.1) ** 2)  # 785
    assert rows_needed(-0.01, 0.3, -0.02, alpha=0.025, side="above") == math.ceil((z * 0.3 / 0.01) ** 2)
    assert rows_needed(-0.05, 0.3, 0.0, side="above") is None  # wrong side: no n shows an improvement
    assert rows_needed(-0.05, 0.3, 0.0, side="below") is not None
    assert rows_needed(0.0, 0.3, 0.0) is None
    assert rows_needed(0.1, float("nan"), 0.0) is None


def test_cohort_variance_and_bounds() -> None:
    assert cohort_variance(np.array([0.1, 0.3])) == pytest.approx(0.01)
    assert cohort_variance(np.array([0.5, np.nan])) is None
    v = cohort_variance(np.array([[0.1, 0.3, np.nan], [0.2, 0.2, 0.2]]), axis=1)
    assert v == pytest.approx([0.01, 0.0])
    assert zero_event_halfwidth(1000) == pytest.approx(1 - 0.025 ** (1 / 1000))
    assert zero_event_halfwidth(1000) == pytest.approx(3.69 / 1000, rel=0.01)
    for k, n in [(0, 20), (7, 20), (20, 20), (480, 500)]:
        ref = stats.binomtest(k, n).proportion_ci(method="exact")
        assert clopper_pearson(k, n) == pytest.approx((ref.low, ref.high))


def test_one_sided_p() -> None:
    assert one_sided_p(-0.05, 0.0, 0.02, None, "below") == pytest.approx(stats.norm.cdf(-2.5))
    assert one_sided_p(-0.05, 0.0, 0.02, 30, "below") == pytest.approx(stats.t.cdf(-2.5, 30))
    assert one_sided_p(0.05, 0.0, 0.02, None, "above") == pytest.approx(stats.norm.sf(2.5))
    assert one_sided_p(0.01, 0.0, 0.0, None, "below") == 1.0
    assert one_sided_p(-0.01, 0.0, 0.0, None, "below") == 0.0
