"""Statistics of the gate: paired tests, multiplicity corrections, sample-size estimates.

Pure functions over numpy arrays, independent of the store. The bootstrap itself lives in
:mod:`tunegate.engine.stats.bootstrap` (re-exported here); this module holds what is computed per cell.

Choices, and why (see docs/decisions/0002-gate-statistics.md):

* McNemar is exact (binomial on the discordant pairs), because cohorts are small and the
  chi-square version is poor below ~25 discordant pairs.
* Wilcoxon uses ``zero_method="zsplit"``: a tied pair counts half for each side and stays in n, as
  a zero delta stays in the mean delta. Dropping zeros ("wilcox") overstates significance when most
  outputs are identical; Pratt keeps zeros only in the ranking. Above 50 pairs the normal
  approximation with tie correction is computed here (identical to scipy's, ~20x cheaper per call).
* Holm controls the family-wise error rate under any dependence; Benjamini-Hochberg controls the
  false-discovery rate (under positive dependence). Both accept weights, so a budget can be split
  between overall and per-cohort tests (weighted Holm, Holm 1979; weighted BH, Genovese et al. 2006).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from statistics import NormalDist
from typing import Any, Literal

import numpy as np

from tunegate.engine.stats.bootstrap import bootstrap_means, paired_bootstrap_ci


def _special() -> Any:
    """scipy.special, imported on first use: importing scipy costs ~1-3 s at CLI start-up."""
    from scipy import special

    return special


def _stats() -> Any:
    from scipy import stats

    return stats

__all__ = [
    "adjust",
    "benjamini_hochberg",
    "bootstrap_means",
    "clopper_pearson",
    "cohort_variance",
    "holm",
    "mcnemar_exact",
    "one_sided_p",
    "paired_bootstrap_ci",
    "rows_needed",
    "wilcoxon_p",
    "z_quantile",
    "zero_event_halfwidth",
]

Alternative = Literal["two-sided", "greater", "less"]
_NORMAL = NormalDist()


def _norm_cdf(x: float) -> float:
    return 0.5 * math.erfc(-x / math.sqrt(2.0))


def z_quantile(q: float) -> float:
    """Standard normal quantile (stdlib; scipy's ppf costs ~100x more per call)."""
    return _NORMAL.inv_cdf(q)


def mcnemar_exact(wins: int, losses: int, *, alternative: Alternative = "two-sided") -> float:
    """Exact McNemar p-value from the discordant pairs of a paired pass/fail comparison.

    ``wins`` = rows the candidate passes and the baseline fails, ``losses`` = the reverse. Under
    H0 (no difference) each discordant pair is a fair coin. ``greater`` tests "candidate better",
    ``less`` "candidate worse". Two-sided is ``min(1, 2 * P(X <= min(wins, losses)))``, as in
    statsmodels' ``mcnemar(exact=True)``. No discordant pair gives 1.0.
    """
    w, lo = int(wins), int(losses)
    n = w + lo
    if n == 0:
        return 1.0
    if alternative == "greater":  # P(X >= wins)
        return 1.0 if w == 0 else float(_special().bdtrc(w - 1, n, 0.5))
    if alternative == "less":  # P(X <= wins)
        return float(_special().bdtr(w, n, 0.5))
    return float(min(1.0, 2.0 * _special().bdtr(min(w, lo), n, 0.5)))


def wilcoxon_p(deltas: np.ndarray, *, alternative: Alternative = "two-sided") -> float:
    """Wilcoxon signed-rank p-value of paired deltas (candidate - baseline), zeros split.

    NaN entries are ignored; all-zero (or empty) deltas give 1.0: no evidence of a difference.
    Up to 50 pairs scipy decides exact / permutation / normal; above, the tie-corrected normal
    approximation is computed directly (same result as scipy's asymptotic method).
    """
    d = np.asarray(deltas, dtype=np.float64)
    d = d[np.isfinite(d)]
    n = d.size
    if n == 0 or not np.any(d != 0):
        return 1.0
    if n <= 50:
        return float(_stats().wilcoxon(d, zero_method="zsplit", alternative=alternative).pvalue)
    a = np.abs(d)
    order = np.argsort(a)
    sa, sd = a[order], d[order]
    starts = np.flatnonzero(np.r_[True, sa[1:] != sa[:-1]])
    ties = np.diff(np.r_[starts, n]).astype(np.float64)
    ranks = np.repeat(starts + (ties + 1.0) / 2.0, ties.astype(np.int64))  # average (1-based) ranks
    r_plus = ranks[sd > 0].sum() + ranks[sd == 0].sum() / 2.0
    var = (n * (n + 1.0) * (2.0 * n + 1.0) - np.sum(ties**3 - ties) / 2.0) / 24.0
    z = (r_plus - n * (n + 1.0) / 4.0) / math.sqrt(var)
    if alternative == "greater":
        return _norm_cdf(-z)
    if alternative == "less":
        return _norm_cdf(z)
    return float(min(1.0, 2.0 * _norm_cdf(-abs(z))))


def _prepare(pvals: np.ndarray | Sequence[float | None], weights: np.ndarray | Sequence[float] | None
             ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    p = np.array([np.nan if v is None else v for v in np.asarray(pvals, dtype=object).ravel()], dtype=np.float64)
    ok = np.isfinite(p)
    w = np.ones(p.size) if weights is None else np.asarray(weights, dtype=np.float64).ravel().copy()
    if w.size != p.size or np.any(w[ok] <= 0):
        raise ValueError("weights must be positive and match the p-values")
    w[~ok] = 0.0
    total = w.sum()
    if total > 0:
        w = w / total
    return p, ok, w


def holm(pvals: np.ndarray | Sequence[float | None], weights: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """Holm step-down adjusted p-values (family-wise error rate, any dependence).

    With weights (normalised to sum 1) this is the weighted Holm procedure: ordered by p/w, step j
    multiplies by the weight still in play. Equal weights give textbook Holm, ``p_(j) (m - j + 1)``.
    NaN/None p-values are not in the family and stay NaN.
    """
    p, ok, w = _prepare(pvals, weights)
    out = np.full(p.size, np.nan)
    idx = np.flatnonzero(ok)
    if idx.size == 0:
        return out
    q = p[idx] / w[idx]
    order = np.argsort(q, kind="stable")
    remaining = np.cumsum(w[idx][order][::-1])[::-1]  # weight of hypotheses not yet rejected
    adj = np.minimum(1.0, np.maximum.accumulate(q[order] * remaining))
    out[idx[order]] = adj
    return out


def benjamini_hochberg(pvals: np.ndarray | Sequence[float | None],
                       weights: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """Benjamini-Hochberg step-up adjusted p-values (false-discovery rate).

    Weighted version of Genovese, Roeder & Wasserman (2006): BH on ``p / (m w)`` with weights
    normalised to sum 1. When every hypothesis is null (an A/A run), FDR equals the chance of any
    rejection, so BH then also bounds the false-BLOCK rate at alpha.
    """
    p, ok, w = _prepare(pvals, weights)
    out = np.full(p.size, np.nan)
    idx = np.flatnonzero(ok)
    m = idx.size
    if m == 0:
        return out
    q = p[idx] / (w[idx] * m)
    order = np.argsort(q, kind="stable")
    scaled = q[order] * m / np.arange(1, m + 1)
    adj = np.minimum(1.0, np.minimum.accumulate(scaled[::-1])[::-1])
    out[idx[order]] = adj
    return out


def adjust(pvals: np.ndarray | Sequence[float | None], method: Literal["holm", "bh"] = "holm",
           weights: np.ndarray | Sequence[float] | None = None) -> np.ndarray:
    """Adjusted p-values by ``holm`` or ``bh``."""
    if method == "holm":
        return holm(pvals, weights)
    if method == "bh":
        return benjamini_hochberg(pvals, weights)
    raise ValueError(f"unknown correction {method!r}; use 'holm' or 'bh'")


def zero_event_halfwidth(n: int, alpha: float = 0.05) -> float:
    """``1 - (alpha/2)^(1/n)``: the exact (Clopper-Pearson) one-sided bound on a rate when none of n
    rows showed the event (~3.69/n at alpha 0.05, the "rule of three" at 97.5%).

    Used as the narrowest a CI may be: when almost every pair ties, the bootstrap collapses to a
    point and would claim certainty from ties; a regression rarer than this bound cannot be excluded.
    """
    if n <= 0:
        return math.inf
    return float(1.0 - (alpha / 2.0) ** (1.0 / n))


def clopper_pearson(k: int, n: int, alpha: float = 0.05) -> tuple[float, float]:
    """Exact two-sided (1 - alpha) interval for a binomial proportion k / n."""
    if n <= 0:
        return (0.0, 1.0)
    lo = 0.0 if k <= 0 else float(_special().betaincinv(k, n - k + 1, alpha / 2))
    hi = 1.0 if k >= n else float(_special().betaincinv(k + 1, n - k, 1 - alpha / 2))
    return lo, hi


def one_sided_p(estimate: float, bound: float, se: float, df: float | None,
                side: Literal["below", "above"]) -> float:
    """p-value that the true value lies beyond ``bound`` on ``side``, from a t approximation.

    ``side="below"`` tests H1: true < bound (p small when the estimate is well below the bound).
    ``se`` is the bootstrap standard error, ``df`` the pairs (or clusters) minus one; ``None`` = normal.
    Used for the fail side of rules, where multiplicity pushes levels to ~1e-4, deeper than 2,000
    resamples can resolve as percentiles.
    """
    if not math.isfinite(estimate) or not math.isfinite(se):
        return 1.0
    if se <= 0:
        below = estimate < bound
        return 0.0 if (below if side == "below" else estimate > bound) else 1.0
    t = (estimate - bound) / se
    if side == "above":
        t = -t
    if df is None or df <= 0:
        return _norm_cdf(t)
    return float(_special().stdtr(df, t))


def rows_needed(mean_delta: float, sd_delta: float, bound: float = 0.0, *, alpha: float = 0.025,
                power: float = 0.8, side: Literal["above", "below", "either"] = "either") -> int | None:
    """About how many pairs a one-sided level-``alpha`` test needs to place the mean beyond ``bound``.

    Normal approximation for a paired test: ``n = ((z_{1-alpha} + z_power) * sd / (mean - bound))^2``.
    ``alpha`` is the one-sided level (0.025 for the lower bound of a 95% CI). ``side="above"`` asks
    for evidence that mean > bound and returns None when the observed mean is not above it (no
    number of rows shows an effect on the wrong side of the bound); ``"below"`` mirrors it;
    ``"either"`` uses whichever side the mean is on. None as well when sd is unknown or the mean
    sits exactly on the bound. ``sd`` should include any cluster design effect (se * sqrt(n)).
    """
    gap = mean_delta - bound
    if not (math.isfinite(gap) and math.isfinite(sd_delta)) or gap == 0:
        return None
    if (side == "above" and gap < 0) or (side == "below" and gap > 0):
        return None
    z = z_quantile(1 - alpha) + z_quantile(power)
    return max(2, math.ceil((z * sd_delta / abs(gap)) ** 2))


def cohort_variance(means_by_cohort: np.ndarray, axis: int = -1) -> np.ndarray | float | None:
    """Population variance (ddof=0) of cohort means, each cohort weighted equally; NaN skipped.

    Equal weights because the question is "does quality depend on who asks", not "on how many
    rows each cohort has". 1-D input gives a float, or None with fewer than two cohorts.
    """
    m = np.asarray(means_by_cohort, dtype=np.float64)
    finite = np.isfinite(m).sum(axis=axis)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = np.nansum(m, axis=axis, keepdims=True) / np.expand_dims(np.maximum(finite, 1), axis)
        var = np.nansum((m - mean) ** 2, axis=axis) / np.maximum(finite, 1)
    var = np.where(finite >= 2, var, np.nan)
    if m.ndim == 1:
        v = float(var)
        return v if math.isfinite(v) else None
    return var
