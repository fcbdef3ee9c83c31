"""Is the gate calibrated? Simulated gates with a known truth, counted.

Why: a gate that BLOCKs a candidate identical to production 10% of the time gets switched off;
one that PROMOTEs a candidate that is no better 10% of the time is worse than none. The nominal
rate is alpha = 5% for both. We simulate (``tunegate.engine.stats.simulate``) runs whose truth we know:

* A/A: the candidate *is* the baseline, re-sampled (temperature > 0): every BLOCK is false, and with
  an ``improve`` headline every PROMOTE is false. Binary and continuous metrics, 5 cohorts, the
  example policy of the issue (headline, 3 guards, per-cohort non-inferiority, cohort-variance limit,
  error budget), once with 1 and once with 3 samples per row.
* At the margin: the candidate is worse by exactly the non-inferiority margin, so a PROMOTE is false.
  This is the tightest case for the pass side (binary, and continuous with 3 samples).
* Power: a 3-point drop on a binary metric with p ~ 0.8 at n = 1,000, under a single ``no_drop``
  guard and under the full example policy (where the multiplicity correction costs power).
* ``no_drop`` (issue 11: it must be passable): A/A under a single ``no_drop`` guard (margin 0.03 at
  p ~ 0.8; margin 0.01 near the ceiling, p ~ 0.99), where PROMOTE is the *right* answer and is
  reported as "pass rate"; the candidate exactly at the margin (a PROMOTE is false); and the issue's
  example policy with ``content_safety: no_drop, margin 0.01``.

Rates are printed with exact (Clopper-Pearson) 95% intervals. Run: ``python bench/gate_calibration.py
[--gates 1000]``.
"""

from __future__ import annotations

import argparse
import time
from collections import Counter
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.decide import gate_arrays
from tunegate.engine.stats.inference import clopper_pearson
from tunegate.engine.stats.simulate import MetricSpec, simulate_pair

__all__ = ["EXAMPLE_POLICY", "Scenario", "main", "run_scenario"]

EXAMPLE_POLICY: dict[str, Any] = {
    "name": "issue-example",
    "headline": {"evaluator": "task_completion", "rule": "improve"},
    "guards": [
        {"evaluator": "groundedness", "rule": "non_inferior", "margin": 0.02},
        {"evaluator": "content_safety", "rule": "non_inferior", "margin": 0.0},
        {"evaluator": "json_validation", "rule": "floor", "min": 0.95},
    ],
    "cohorts": {"rule": "non_inferior", "margin": 0.05, "min_rows": 20},
    "max_cohort_variance_increase": 0.01,
    "error_budget": 0.02,
}


def example_metrics(task_shift: float = 0.0) -> list[MetricSpec]:
    """The issue's four evaluators: task completion (pass/fail, ~0.8), groundedness (continuous),
    content safety (pass/fail, ~0.97) and JSON validity (pass/fail, ~0.99)."""
    return [
        MetricSpec("task_completion", True, 0.8, concentration=0.5, shift=task_shift),
        MetricSpec("groundedness", False, 0.8, concentration=8.0, noise=0.1),
        MetricSpec("content_safety", True, 0.97, concentration=0.5),
        MetricSpec("json_validation", True, 0.99, concentration=0.5, error_rate=0.002),
    ]


@dataclass(frozen=True)
class Scenario:
    """A simulated truth, the policy applied, and which decision would be an error."""

    name: str
    truth: str
    metrics: list[MetricSpec]
    policy: dict[str, Any]
    measure: str  # "false BLOCK" | "false PROMOTE" | "power (BLOCK)"
    bad: str  # decision counted by ``measure``
    target: str  # "<= 5%" or ">= 80%"
    cohorts: int = 5
    samples: int = 1
    rows: int = 1000


def scenarios(rows: int) -> list[Scenario]:
    ex = EXAMPLE_POLICY
    margin_bin = [MetricSpec("task_completion", True, 0.8, concentration=0.5, shift=-0.02)]
    margin_cont = [MetricSpec("groundedness", False, 0.5, concentration=20.0, noise=0.15, shift=-0.02)]
    ni = {"guards": [{"evaluator": "task_completion", "rule": "non_inferior", "margin": 0.02}]}
    ni_c = {"guards": [{"evaluator": "groundedness", "rule": "non_inferior", "margin": 0.02}]}
    drop = {"guards": [{"evaluator": "task_completion", "rule": "no_drop", "margin": 0.02}]}
    nd = {"guards": [{"evaluator": "task_completion", "rule": "no_drop", "margin": 0.03}]}
    nd_ceiling = {"guards": [{"evaluator": "content_safety", "rule": "no_drop", "margin": 0.01}]}
    ex_nd = {**ex, "guards": [{"evaluator": "groundedness", "rule": "non_inferior", "margin": 0.02},
                              {"evaluator": "content_safety", "rule": "no_drop", "margin": 0.01},
                              {"evaluator": "json_validation", "rule": "floor", "min": 0.95}]}
    safety = [MetricSpec("content_safety", True, 0.99, concentration=0.5)]
    at_nd_margin = [MetricSpec("task_completion", True, 0.8, concentration=0.5, shift=-0.03)]
    return [
        Scenario("A/A, example policy", "identical", example_metrics(), ex, "false BLOCK", "BLOCK", "<= 5%", rows=rows),
        Scenario("A/A, example policy", "identical", example_metrics(), ex, "false PROMOTE", "PROMOTE", "<= 5%",
                 rows=rows),
        Scenario("A/A, 3 samples/row", "identical", example_metrics(), ex, "false BLOCK", "BLOCK", "<= 5%",
                 samples=3, rows=rows),
        Scenario("A/A, 3 samples/row", "identical", example_metrics(), ex, "false PROMOTE", "PROMOTE", "<= 5%",
                 samples=3, rows=rows),
        Scenario("at NI margin, binary", "delta = -0.02 = -margin", margin_bin, ni, "false PROMOTE", "PROMOTE",
                 "<= 5%", cohorts=0, rows=rows),
        Scenario("at NI margin, continuous", "delta = -0.02 = -margin", margin_cont, ni_c, "false PROMOTE",
                 "PROMOTE", "<= 5%", cohorts=0, samples=3, rows=rows),
        Scenario("3-pt drop, no_drop guard", "delta = -0.03, p~0.8, n=1000", example_metrics(-0.03)[:1], drop,
                 "power (BLOCK)", "BLOCK", ">= 80%", cohorts=0, rows=1000),
        Scenario("3-pt drop, example policy", "delta = -0.03, p~0.8, n=1000", example_metrics(-0.03), ex,
                 "power (BLOCK)", "BLOCK", "(report)", rows=1000),
        Scenario("A/A, no_drop m=0.03", "identical, p~0.8", example_metrics()[:1], nd, "pass rate (PROMOTE)",
                 "PROMOTE", "(report)", cohorts=0, rows=rows),
        Scenario("A/A, no_drop m=0.03", "identical, p~0.8", example_metrics()[:1], nd, "false BLOCK", "BLOCK",
                 "<= 5%", cohorts=0, rows=rows),
        Scenario("A/A, no_drop m=0.01 ceiling", "identical, p~0.99", safety, nd_ceiling, "pass rate (PROMOTE)",
                 "PROMOTE", "(report)", cohorts=0, rows=rows),
        Scenario("at no_drop margin", "delta = -0.03 = -margin", at_nd_margin, nd, "false PROMOTE", "PROMOTE",
                 "<= 5%", cohorts=0, rows=rows),
        Scenario("A/A, example w/ no_drop", "identical", example_metrics(), ex_nd, "false BLOCK", "BLOCK", "<= 5%",
                 rows=rows),
    ]


def _legacy(policy: dict[str, Any]) -> dict[str, Any]:
    """The policy with every no_drop rule as it was judged before issue 11 (threshold 0 on both sides)."""
    def fix(rule: Any) -> Any:
        if isinstance(rule, dict) and rule.get("rule") == "no_drop":
            return {**rule, "rule": "non_inferior", "margin": 0.0}
        return rule
    out = {k: fix(v) for k, v in policy.items()}
    if "guards" in out:
        out["guards"] = [fix(g) for g in out["guards"]]
    return out


def run_scenario(sc: Scenario, gates: int, seed: int) -> tuple[Counter[str], float]:
    """Decisions over ``gates`` simulated comparisons (each with its own data and bootstrap seed)."""
    rng = np.random.default_rng(seed)
    counts: Counter[str] = Counter()
    flips = []
    for i in range(gates):
        inp = simulate_pair(sc.rows, sc.metrics, cohorts=sc.cohorts, samples=sc.samples, seed=rng)
        policy = GatePolicy.model_validate({**sc.policy, "seed": i})
        _, verdict = gate_arrays(inp, policy)
        counts[verdict.decision] += 1
        m = inp.metrics[0]
        if m.binary:
            flips.append(float(np.mean(np.asarray(m.base).reshape(sc.rows, -1)[:, 0]
                                       != np.asarray(m.cand).reshape(sc.rows, -1)[:, 0])))
    return counts, float(np.mean(flips)) if flips else float("nan")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gates", type=int, default=1000, help="simulated gates per scenario (default 1000)")
    ap.add_argument("--rows", type=int, default=1000, help="rows per simulated run (A/A and margin)")
    ap.add_argument("--seed", type=int, default=20261121)
    ap.add_argument("--only", default=None, help="run only scenarios whose name contains this text")
    ap.add_argument("--legacy-no-drop", action="store_true",
                    help="judge no_drop as before issue 11 (non_inferior with margin 0: passes only on a "
                         "significant improvement), for before/after tables")
    args = ap.parse_args()
    console = Console(width=170)
    legacy = " (legacy no_drop: margin 0 on both sides)" if args.legacy_no_drop else ""
    table = Table(title=f"Gate calibration: {args.gates} simulated gates per scenario, alpha = 0.05{legacy}")
    for col in ("scenario", "truth", "rows", "PROMOTE", "BLOCK", "INCONCL.", "measure", "rate [95% CI]",
                "target", "ok", "flip rate*"):
        table.add_column(col, justify="left" if col in ("scenario", "truth", "measure") else "right")
    t0 = time.perf_counter()
    cache: dict[tuple[str, int], tuple[Counter[str], float]] = {}
    for k, sc in enumerate(scenarios(args.rows)):
        if args.only and args.only not in sc.name:
            continue
        if args.legacy_no_drop:
            sc = replace(sc, policy=_legacy(sc.policy))
        key = (sc.name, sc.samples)  # scenarios sharing a name share their simulations
        if key not in cache:  # the two A/A rows of a scenario read the same simulations
            cache[key] = run_scenario(sc, args.gates, args.seed + k)
        counts, flip = cache[key]
        bad = counts[sc.bad]
        lo, hi = clopper_pearson(bad, args.gates)
        rate = bad / args.gates
        ok = rate >= 0.8 if sc.target.startswith(">=") else (rate <= 0.05 if sc.target.startswith("<=") else None)
        table.add_row(sc.name, sc.truth, f"{sc.rows:,}",
                      *(f"{counts[d] / args.gates:.1%}" for d in ("PROMOTE", "BLOCK", "INCONCLUSIVE")),
                      sc.measure, f"{rate:.1%} [{lo:.1%}, {hi:.1%}]", sc.target,
                      "-" if ok is None else ("yes" if ok else "NO"),
                      "-" if np.isnan(flip) else f"{flip:.1%}")
    console.print(table)
    console.print("* flip rate: share of rows whose first sample differs between the two sides on the first "
                  "(pass/fail) metric: sampling noise plus any true change; it sets the paired test's variance.")
    console.print(f"{len(cache)} simulation sets, {time.perf_counter() - t0:.0f} s.")


if __name__ == "__main__":
    main()
