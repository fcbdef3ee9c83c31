"""Paired comparison of a candidate against a baseline, per evaluator, overall and per cohort.

Array level and independent of the store: the run engine turns two stored runs into a
:class:`ComparisonInput` (row ids, cohort tags, optional cluster keys, one :class:`MetricInput` per
evaluator) and :func:`compare_arrays` returns a :class:`Comparison` that a gate or a report reads.

Why it looks like this:

* Rows are paired by position (the caller aligns them by example id). A row without a score on
  both sides leaves the paired statistics but is listed by id (error / skipped / missing, per side)
  and counted: nothing disappears silently.
* With several samples per row (stochastic decoding), scores are averaged per row *first* and rows
  are resampled, so sample-to-sample noise is inside the bootstrap distribution instead of being
  mistaken for extra rows.
* One Poisson-bootstrap weight matrix serves every evaluator and cohort (see
  :mod:`tunegate.engine.stats.bootstrap`), so deltas, candidate means and cross-cohort variances are
  all computed from the same resamples and stay consistent with each other.
* CIs are percentile bootstrap, never narrower than the zero-event exact bound
  (:func:`~tunegate.engine.stats.inference.zero_event_halfwidth`); a pass/fail candidate mean's CI is also at
  least as wide as Clopper-Pearson's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from tunegate.engine.stats.bootstrap import bootstrap_means
from tunegate.engine.stats.inference import (
    adjust,
    clopper_pearson,
    cohort_variance,
    mcnemar_exact,
    wilcoxon_p,
    zero_event_halfwidth,
)
from tunegate.engine.stats.results import (
    OVERALL,
    Cell,
    Comparison,
    EvaluatorComparison,
    SideIssues,
    num,
)

__all__ = [
    "OVERALL",
    "STATUSES",
    "Cell",
    "Comparison",
    "ComparisonInput",
    "EvaluatorComparison",
    "MetricInput",
    "SideIssues",
    "compare_arrays",
]

#: Per-row result status, as in :class:`tunegate.core.result.EvalResult` plus ``missing`` (no result).
STATUSES: tuple[str, ...] = ("ok", "error", "skipped", "missing")
_OK, _ERROR, _SKIPPED, _MISSING = range(4)


@dataclass
class MetricInput:
    """One evaluator's scores on both sides, aligned with ``ComparisonInput.row_ids``.

    ``base``/``cand`` are (n,) per-row scores or (n, s) samples per row (averaged per row, NaN
    samples skipped). NaN means no score. ``*_status`` are per-row ``ok|error|skipped|missing``;
    when omitted, a finite score is ``ok`` and NaN is ``missing``. ``binary`` marks pass/fail
    evaluators (exact McNemar when every paired score is 0 or 1).
    """

    evaluator: str
    binary: bool
    base: np.ndarray
    cand: np.ndarray
    base_status: Sequence[str] | np.ndarray | None = None
    cand_status: Sequence[str] | np.ndarray | None = None


@dataclass
class ComparisonInput:
    """Rows (by id) with their cohort tags (a row may carry several), optional cluster keys
    (rows sharing a source are resampled together) and the evaluators' scores."""

    row_ids: list[str]
    cohorts: list[list[str]] | None = None
    clusters: list[str] | None = None
    metrics: list[MetricInput] = field(default_factory=list)


def _side(values: np.ndarray, status: Sequence[str] | np.ndarray | None, n: int, what: str
          ) -> tuple[np.ndarray, np.ndarray]:
    """Per-row mean and status code of one side; raises ValueError on inconsistent input."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 2:  # samples per row: mean of the finite ones
        ok = np.isfinite(v)
        cnt = ok.sum(axis=1)
        v = np.where(cnt > 0, np.where(ok, v, 0.0).sum(axis=1) / np.maximum(cnt, 1), np.nan)
    if v.ndim != 1 or v.shape[0] != n:
        raise ValueError(f"{what}: expected {n} rows (or an (n, samples) array), got shape {np.shape(values)}")
    finite = np.isfinite(v)
    if status is None:
        return np.where(finite, v, np.nan), np.where(finite, _OK, _MISSING).astype(np.uint8)
    names = np.asarray(status, dtype=str)
    if names.shape != (n,):
        raise ValueError(f"{what}: status must have one entry per row")
    bad = ~np.isin(names, STATUSES)
    if bad.any():
        raise ValueError(f"{what}: unknown status {names[bad][0]!r} (use {', '.join(STATUSES)})")
    uniq, inverse = np.unique(names, return_inverse=True)
    codes = np.array([STATUSES.index(u) for u in uniq], dtype=np.uint8)[inverse.reshape(-1)]
    if np.any((codes == _OK) & ~finite):
        raise ValueError(f"{what}: a row with status 'ok' has no finite score")
    return np.where(codes == _OK, v, np.nan), codes


def _membership(inp: ComparisonInput, n: int) -> tuple[list[str], np.ndarray]:
    tags = inp.cohorts if inp.cohorts is not None else [[] for _ in range(n)]
    if len(tags) != n:
        raise ValueError(f"cohorts: expected one tag list per row ({n}), got {len(tags)}")
    names = sorted({str(t) for row in tags for t in row})
    if OVERALL in names:
        raise ValueError(f"cohort name {OVERALL!r} is reserved for the whole set")
    col = {c: j + 1 for j, c in enumerate(names)}
    mem = np.zeros((n, len(names) + 1), dtype=bool)
    mem[:, 0] = True
    for i, row in enumerate(tags):
        for t in row:
            mem[i, col[str(t)]] = True
    return names, mem


def _quantiles(reps: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Percentile bounds over axis 0; NaN where every replicate is NaN (empty cell)."""
    if not np.isnan(reps).any():
        lo, hi = np.quantile(reps, [alpha / 2, 1 - alpha / 2], axis=0)
        return lo, hi
    lo = np.full(reps.shape[1:], np.nan)
    hi = np.full(reps.shape[1:], np.nan)
    some = np.isfinite(reps).any(axis=0)
    if some.any():
        sub = reps[:, some]
        lo[some], hi[some] = np.nanquantile(sub, [alpha / 2, 1 - alpha / 2], axis=0)
    return lo, hi


def _nanstd(reps: np.ndarray) -> np.ndarray:
    ok = np.isfinite(reps)
    cnt = ok.sum(axis=0)
    x = np.where(ok, reps, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        mean = x.sum(axis=0) / cnt
        var = (np.where(ok, reps - mean, 0.0) ** 2).sum(axis=0) / (cnt - 1)
    return np.where(cnt > 1, np.sqrt(var), np.nan)


def _ids(row_ids: list[str], mask: np.ndarray) -> list[str]:
    return [row_ids[i] for i in np.flatnonzero(mask)]


def compare_arrays(
    inp: ComparisonInput,
    *,
    n_resamples: int = 2000,
    alpha: float = 0.05,
    seed: int = 0,
    correction: Literal["holm", "bh"] = "holm",
    min_cohort_rows: int = 20,
) -> Comparison:
    """Paired statistics per evaluator x (overall + each cohort).

    ``min_cohort_rows``: cohorts with fewer pairs do not enter the cross-cohort variance (their
    means are mostly noise). ``correction`` adjusts the per-cell test p-values across all cells.
    """
    n = len(inp.row_ids)
    if len(set(inp.row_ids)) != n:
        raise ValueError("row_ids must be unique")
    names = [m.evaluator for m in inp.metrics]
    if len(set(names)) != len(names):
        raise ValueError("each evaluator may appear once")
    if not 0 < alpha < 1 or n_resamples < 100:
        raise ValueError("alpha must be in (0, 1) and n_resamples >= 100")
    cohort_names, mem = _membership(inp, n)
    labels = [OVERALL, *cohort_names]
    codes = None
    if inp.clusters is not None:
        if len(inp.clusters) != n:
            raise ValueError("clusters: expected one key per row")
        codes = np.unique(np.asarray(inp.clusters, dtype=str), return_inverse=True)[1].reshape(-1)
    k = len(inp.metrics)
    base = np.full((k, n), np.nan)
    cand = np.full((k, n), np.nan)
    bcode = np.zeros((k, n), dtype=np.uint8)
    ccode = np.zeros((k, n), dtype=np.uint8)
    for e, m in enumerate(inp.metrics):
        base[e], bcode[e] = _side(m.base, m.base_status, n, f"{m.evaluator} baseline")
        cand[e], ccode[e] = _side(m.cand, m.cand_status, n, f"{m.evaluator} candidate")
    paired = (bcode == _OK) & (ccode == _OK)
    delta = np.where(paired, cand - base, np.nan)
    cand_p = np.where(paired, cand, np.nan)

    # Observed per-cell statistics by matrix products over the membership matrix.
    memf = mem.astype(np.float64)
    pf = paired.astype(np.float64)
    counts = pf @ memf  # (k, G)
    d0 = np.nan_to_num(delta)
    c0 = np.nan_to_num(cand_p)
    with np.errstate(invalid="ignore", divide="ignore"):
        dmean = (d0 @ memf) / counts
        cmean = (c0 @ memf) / counts
        dvar = ((d0**2) @ memf - counts * dmean**2) / (counts - 1)
    dsd = np.sqrt(np.maximum(dvar, 0.0))

    reps = bootstrap_means(np.concatenate([delta, cand_p]), mem, n_resamples=n_resamples, seed=seed,
                           clusters=codes)  # (B, G, 2k)
    d_reps, c_reps = reps[:, :, :k], reps[:, :, k:]
    d_lo, d_hi = _quantiles(d_reps, alpha)
    c_lo, c_hi = _quantiles(c_reps, alpha)
    d_se, c_se = _nanstd(d_reps), _nanstd(c_reps)

    binary_test = [m.binary and bool(np.all(np.isin(np.concatenate([base[e][paired[e]], cand[e][paired[e]]]),
                                                    (0.0, 1.0)))) for e, m in enumerate(inp.metrics)]
    cols = [np.flatnonzero(mem[:, g]) for g in range(len(labels))]
    results: list[EvaluatorComparison] = []
    pvals: list[float | None] = []
    for e, m in enumerate(inp.metrics):
        cells: list[Cell] = []
        # Scores in [0, 1] (the EvalResult contract) bound deltas to [-1, 1]: the floor must not pass them.
        vals = np.concatenate([base[e][paired[e]], cand[e][paired[e]]])
        unit = bool(vals.size) and bool(np.all((vals >= 0) & (vals <= 1)))
        for g, label in enumerate(labels):
            rows = cols[g][paired[e, cols[g]]]
            npair = int(rows.size)
            h = zero_event_halfwidth(npair, alpha)
            dm, cm = float(dmean[e, g]), float(cmean[e, g])
            lo, hi = min(float(d_lo[g, e]), dm - h), max(float(d_hi[g, e]), dm + h)
            clo, chi = min(float(c_lo[g, e]), cm - h), max(float(c_hi[g, e]), cm + h)
            up = down = None
            p: float | None = None
            if binary_test[e]:
                up = int(np.sum(delta[e, rows] > 0))
                down = int(np.sum(delta[e, rows] < 0))
                if npair:
                    p = mcnemar_exact(up, down)
                    cp_lo, cp_hi = clopper_pearson(round(cm * npair), npair, alpha)
                    clo, chi = min(clo, cp_lo), max(chi, cp_hi)
            elif npair:
                p = wilcoxon_p(delta[e, rows])
            if unit:
                lo, hi, clo, chi = max(lo, -1.0), min(hi, 1.0), max(clo, 0.0), min(chi, 1.0)
            nclu = None
            if codes is not None:
                nclu = int(np.unique(codes[rows]).size)
            pvals.append(p)
            cells.append(Cell(
                evaluator=m.evaluator, cohort=label, n_pairs=npair, n_clusters=nclu,
                base_mean=num(cm - dm) if npair else None, cand_mean=num(cm) if npair else None,
                delta=num(dm) if npair else None,
                ci_low=num(lo) if npair else None, ci_high=num(hi) if npair else None,
                se=num(d_se[g, e]) if npair else None, sd_delta=num(dsd[e, g]) if npair > 1 else None,
                cand_ci_low=num(clo) if npair else None, cand_ci_high=num(chi) if npair else None,
                cand_se=num(c_se[g, e]) if npair else None,
                p_value=p, p_adjusted=None, test="mcnemar" if binary_test[e] else "wilcoxon",
                flipped_up=up, flipped_down=down,
            ))
        results.append(_evaluator(inp.row_ids, m, e, cells, bcode, ccode, paired, d_reps, c_reps,
                                  labels, min_cohort_rows, alpha))
    adjusted = adjust(pvals, correction)
    flat = [c for r in results for c in r.cells]
    for c, a in zip(flat, adjusted, strict=True):
        c.p_adjusted = num(a)
    return Comparison(
        row_ids=list(inp.row_ids), cohorts=cohort_names,
        cohort_sizes={c: int(mem[:, j + 1].sum()) for j, c in enumerate(cohort_names)},
        evaluators=results, alpha=alpha, n_resamples=n_resamples, seed=seed, correction=correction,
        min_cohort_rows=min_cohort_rows, n_clusters=None if codes is None else int(codes.max(initial=-1) + 1),
    )


def _evaluator(row_ids: list[str], m: MetricInput, e: int, cells: list[Cell], bcode: np.ndarray,
               ccode: np.ndarray, paired: np.ndarray, d_reps: np.ndarray, c_reps: np.ndarray,
               labels: list[str], min_cohort_rows: int, alpha: float) -> EvaluatorComparison:
    """Row issues and cross-cohort variance (observed and bootstrapped) of one evaluator."""

    def issues(code: np.ndarray) -> SideIssues:
        return SideIssues(errored=_ids(row_ids, code == _ERROR), skipped=_ids(row_ids, code == _SKIPPED),
                          missing=_ids(row_ids, code == _MISSING))

    b_ok, c_ok = bcode[e] == _OK, ccode[e] == _OK
    eligible = [g for g in range(1, len(labels)) if cells[g].n_pairs >= min_cohort_rows]
    bvar = cvar = inc = lo = hi = se = None
    if len(eligible) >= 2:
        cm = np.array([cells[g].cand_mean for g in eligible], dtype=np.float64)
        bm = np.array([cells[g].base_mean for g in eligible], dtype=np.float64)
        cvar, bvar = cohort_variance(cm), cohort_variance(bm)
        crep = c_reps[:, eligible, e]
        brep = crep - d_reps[:, eligible, e]
        inc_reps = np.asarray(cohort_variance(crep, axis=1)) - np.asarray(cohort_variance(brep, axis=1))
        inc_reps = inc_reps[np.isfinite(inc_reps)]
        if cvar is not None and bvar is not None and inc_reps.size > 1:
            inc = cvar - bvar
            lo, hi = (float(q) for q in np.quantile(inc_reps, [alpha / 2, 1 - alpha / 2]))
            se = float(np.std(inc_reps, ddof=1))
    return EvaluatorComparison(
        evaluator=m.evaluator, binary=m.binary, test=cells[0].test, n_rows=len(row_ids),
        n_pairs=int(paired[e].sum()), base=issues(bcode[e]), cand=issues(ccode[e]),
        one_sided=_ids(row_ids, b_ok ^ c_ok), cells=cells,
        base_cohort_variance=num(bvar), cand_cohort_variance=num(cvar), variance_increase=num(inc),
        variance_ci_low=num(lo), variance_ci_high=num(hi), variance_se=num(se),
        variance_cohorts=[labels[g] for g in eligible] if len(eligible) >= 2 else [],
    )
