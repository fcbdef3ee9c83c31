"""The gate: pair two stored runs, compare them, apply a policy → PROMOTE / BLOCK / INCONCLUSIVE.

* :mod:`~tunegate.engine.gate.pairing`       — pair runs by row id, refusing mismatched identities.
* :mod:`~tunegate.engine.gate.decide`        — a policy applied to a comparison gives a verdict.
* :mod:`~tunegate.engine.gate.runs`          — the whole call on stored runs (``gate_runs``).
* :mod:`~tunegate.engine.gate.forgetting`    — the general-capability probe rule.
* :mod:`~tunegate.engine.gate.contamination` — exclude gated rows that overlap tuning data.
"""

from tunegate.engine.gate.decide import ExternalRule, decide, gate_arrays
from tunegate.engine.gate.pairing import PairedEvaluator, PairedRuns, pair_runs
from tunegate.engine.gate.runs import GateResult, compare_runs, comparison_input, gate_runs, row_diffs

__all__ = ["ExternalRule", "GateResult", "PairedEvaluator", "PairedRuns", "compare_runs", "comparison_input",
           "decide", "gate_arrays", "gate_runs", "pair_runs", "row_diffs"]
