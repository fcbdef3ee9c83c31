"""How long does gating take at production size, next to what a user would write by hand?

Input: 10,000 rows x 12 evaluators (6 pass/fail, 6 continuous) x 20 cohorts, 2,000 bootstrap
resamples: 252 cells (12 evaluators x (overall + 20 cohorts)).

* **tunegate**: the whole gate, ``compare_arrays`` (CIs, McNemar/Wilcoxon per cell, Holm, cross-cohort
  variance) + ``decide`` (a policy with a headline, 11 guards, per-cohort rules, the variance limit
  and the error budget). One shared Poisson-bootstrap weight matrix; see tunegate.engine.stats.bootstrap.
* **naive scipy**: ``scipy.stats.bootstrap`` on each cell's paired deltas, 2,000 resamples, percentile
  method (like for like) and its default BCa. It is too slow to run on all 252 cells in a bench, so
  it is timed on a subset (overall and cohort cells separately) and extrapolated linearly by cell
  count; the table says from how many cells. It computes CIs only (no tests, no variance, no verdict).
* **MLflow**'s comparison is measured only if ``mlflow`` is installed.

Timings are from this one run on this machine (shared, noisy); the ratio is what to read.
Run: ``python bench/gate_speed.py``.
"""

from __future__ import annotations

import importlib.util
import os
import statistics
import time
from collections.abc import Callable

import numpy as np
from rich.console import Console
from rich.table import Table
from scipy import stats

from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.decide import decide
from tunegate.engine.stats.compare import ComparisonInput, MetricInput, compare_arrays

__all__ = ["build_input", "main"]

N_ROWS, N_EVALUATORS, N_COHORTS, N_RESAMPLES = 10_000, 12, 20, 2000


def build_input(seed: int = 0) -> ComparisonInput:
    """Correlated paired scores: pass/fail via a latent pass probability per row, continuous via a
    latent quality plus noise; cohort sizes vary (Dirichlet)."""
    rng = np.random.default_rng(seed)
    cohort = rng.choice(N_COHORTS, size=N_ROWS, p=rng.dirichlet(np.full(N_COHORTS, 4.0)))
    metrics = []
    for e in range(N_EVALUATORS):
        if e % 2 == 0:
            p = rng.beta(0.4, 0.1, N_ROWS)
            base = (rng.random(N_ROWS) < p).astype(float)
            cand = (rng.random(N_ROWS) < p).astype(float)
        else:
            q = rng.beta(8, 2, N_ROWS)
            base = np.clip(q + rng.normal(0, 0.1, N_ROWS), 0, 1)
            cand = np.clip(q + rng.normal(0, 0.1, N_ROWS), 0, 1)
        metrics.append(MetricInput(f"ev{e:02d}", e % 2 == 0, base, cand))
    return ComparisonInput([f"row{i}" for i in range(N_ROWS)], [[f"c{c:02d}"] for c in cohort], None, metrics)


def _policy() -> GatePolicy:
    guards = [{"evaluator": f"ev{e:02d}", "rule": "non_inferior", "margin": 0.02} for e in range(1, N_EVALUATORS)]
    return GatePolicy.model_validate({
        "headline": {"evaluator": "ev00", "rule": "improve"}, "guards": guards,
        "cohorts": {"rule": "non_inferior", "margin": 0.05, "min_rows": 20},
        "max_cohort_variance_increase": 0.01, "error_budget": 0.02, "n_resamples": N_RESAMPLES,
    })


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _cells(inp: ComparisonInput) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per-cell delta arrays: overall cells and cohort cells."""
    tags = np.array([t[0] for t in inp.cohorts or []])
    overall, cohort = [], []
    for m in inp.metrics:
        d = np.asarray(m.cand) - np.asarray(m.base)
        overall.append(d)
        cohort += [d[tags == c] for c in sorted(set(tags))]
    return overall, cohort


def main() -> None:
    console = Console(width=150)
    inp = build_input()
    policy = _policy()
    gate = lambda: decide(compare_arrays(inp, **policy.compare_options()), policy)  # noqa: E731
    first = _timed(gate)
    runs = [_timed(gate) for _ in range(3)]
    ours = statistics.median(runs)
    overall, cohort = _cells(inp)
    n_cells = len(overall) + len(cohort)

    def naive(cells: list[np.ndarray], method: str) -> float:
        """Mean seconds per cell of scipy.stats.bootstrap on the cell's deltas."""
        total = 0.0
        for d in cells:
            t0 = time.perf_counter()
            stats.bootstrap((d,), np.mean, n_resamples=N_RESAMPLES, method=method, rng=0)
            total += time.perf_counter() - t0
        return total / len(cells)

    k_over, k_coh = 1, 8
    pct = naive(overall[:k_over], "percentile") * len(overall) + naive(cohort[:k_coh], "percentile") * len(cohort)
    bca = naive(overall[:k_over], "BCa") * len(overall) + naive(cohort[:2], "BCa") * len(cohort)

    table = Table(title=f"Gate speed: {N_ROWS:,} rows x {N_EVALUATORS} evaluators x {N_COHORTS} cohorts, "
                        f"{N_RESAMPLES:,} resamples ({n_cells} cells), {os.cpu_count()} cores")
    for col in ("approach", "what it computes", "time", "vs tunegate", "how measured"):
        table.add_column(col, justify="right" if col in ("time", "vs tunegate") else "left")
    table.add_row("tunegate gate", "CIs, tests, Holm, variance, verdict", f"{ours:.2f} s", "1.0x",
                  f"median of 3 runs (first run {first:.2f} s)")
    table.add_row("scipy.stats.bootstrap, percentile", "CIs only", f"{pct:.1f} s", f"{pct / ours:.0f}x",
                  f"EXTRAPOLATED from {k_over} overall + {k_coh} cohort cells of {n_cells}")
    table.add_row("scipy.stats.bootstrap, BCa (default)", "CIs only", f"{bca:.1f} s", f"{bca / ours:.0f}x",
                  f"EXTRAPOLATED from {k_over} overall + 2 cohort cells of {n_cells}")
    if importlib.util.find_spec("mlflow") is None:
        table.add_row("MLflow comparison", "-", "-", "-", "not measured: mlflow is not installed")
    else:
        table.add_row("MLflow comparison", "-", "-", "-", "installed, but no like-for-like call is wired up")
    console.print(table)
    goal = "meets" if ours <= 1.0 else "MISSES"
    console.print(f"Goal <= 1 s on 2 cores: {goal} ({ours:.2f} s). Timings from one run of this script; the "
                  "machine may be shared, so read the ratio rather than the seconds.")


if __name__ == "__main__":
    main()
