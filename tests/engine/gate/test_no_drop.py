"""``no_drop`` can pass (issue 11): an unchanged metric passes with enough rows, any confident drop
fails (even one inside the margin, which ``non_inferior`` tolerates), and ``improve`` stays superiority."""

from __future__ import annotations

import numpy as np

from tunegate.core.policy import GatePolicy
from tunegate.core.verdict import Verdict
from tunegate.engine.gate.decide import gate_arrays
from tunegate.engine.stats.compare import ComparisonInput, MetricInput
from tunegate.engine.stats.simulate import MetricSpec, simulate_pair


def verdict(base: np.ndarray, cand: np.ndarray, rule: dict[str, object], binary: bool = True) -> Verdict:
    inp = ComparisonInput([f"r{i}" for i in range(len(base))], None, None,
                          [MetricInput("safety", binary, base, cand)])
    return gate_arrays(inp, GatePolicy.model_validate({"guards": [{"evaluator": "safety", **rule}]}))[1]


def test_unchanged_metric_near_the_ceiling_passes_no_drop_but_not_improve() -> None:
    """The policy docstring's example: content_safety no_drop on a metric at ~99%, candidate unchanged."""
    rng = np.random.default_rng(5)
    base = (rng.random(1500) < 0.99).astype(float)
    cand = base.copy()
    v = verdict(base, cand, {"rule": "no_drop", "margin": 0.01})
    assert v.decision == "PROMOTE", v.reasons
    r = v.rules[0]
    assert r.status == "pass" and r.threshold == -0.01 and r.fail_threshold == 0.0
    assert verdict(base, cand, {"rule": "improve"}).decision == "INCONCLUSIVE"
    # the old semantics (threshold 0 on both sides) can never pass an unchanged metric
    assert verdict(base, cand, {"rule": "non_inferior", "margin": 0.0}).decision == "INCONCLUSIVE"


def test_a_confident_drop_inside_the_margin_fails_no_drop_but_not_non_inferior() -> None:
    inp = simulate_pair(20000, [MetricSpec("safety", True, 0.8, concentration=0.5, shift=-0.02)], cohorts=0, seed=4)
    m = inp.metrics[0]
    nd = verdict(np.asarray(m.base), np.asarray(m.cand), {"rule": "no_drop", "margin": 0.05})
    ni = verdict(np.asarray(m.base), np.asarray(m.cand), {"rule": "non_inferior", "margin": 0.05})
    assert nd.decision == "BLOCK" and nd.rules[0].status == "fail", nd.reasons
    assert ni.decision == "PROMOTE", ni.reasons
    assert "fail test vs +0.000" in nd.rules[0].evidence


def test_aa_no_drop_is_calibrated_and_mostly_passes() -> None:
    """60 A/A gates under one no_drop guard (margin 0.03, p ~ 0.8, 11% of rows flip, n = 2,000): false
    BLOCK at most 6/60 (nominal 5%: P(X > 6) ~ 4% at 5%), and an unchanged model passes most of the time."""
    rng = np.random.default_rng(20261207)
    counts = {"PROMOTE": 0, "BLOCK": 0, "INCONCLUSIVE": 0}
    for i in range(60):
        inp = simulate_pair(2000, [MetricSpec("task", True, 0.8, concentration=0.5)], cohorts=0, seed=rng)
        policy = GatePolicy.model_validate({"guards": [{"evaluator": "task", "rule": "no_drop", "margin": 0.03}],
                                            "n_resamples": 500, "seed": i})
        counts[gate_arrays(inp, policy)[1].decision] += 1
    assert counts["BLOCK"] <= 6, counts
    assert counts["PROMOTE"] >= 40, counts
