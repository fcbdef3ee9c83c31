"""Gate two stored runs: pair them, compute the paired statistics, apply the policy.

This is the store-facing half of the gate; :mod:`tunegate.engine.stats.compare` and
:mod:`tunegate.engine.gate.decide` are the array-level half and know nothing about runs. Gating reads
only stored scores, so re-gating with another policy makes zero model calls.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import numpy as np

from tunegate._version import __version__
from tunegate.core.dataset import DEFAULT_SPLIT_RATIOS, assign_split
from tunegate.core.policy import GatePolicy
from tunegate.core.verdict import Verdict
from tunegate.engine.gate.decide import decide
from tunegate.engine.gate.pairing import PairedRuns, pair_runs
from tunegate.engine.gate.scope import scope_input
from tunegate.engine.run.aggregate import aggregate_row
from tunegate.engine.stats.compare import ComparisonInput, MetricInput, compare_arrays
from tunegate.engine.stats.results import Comparison
from tunegate.errors import UserError
from tunegate.store.sqlite import RowRecord, Store

if TYPE_CHECKING:
    from tunegate.engine.gate.forgetting import Runner

__all__ = ["GateResult", "compare_runs", "comparison_input", "gate_runs", "row_diffs", "scoped_input"]


def _require(paired: PairedRuns, needed: list[str], policy: GatePolicy) -> None:
    names = [e.name for e in paired.evaluators]
    unknown = [n for n in needed if n not in names]
    if unknown:
        raise UserError(f"policy names evaluator(s) {unknown} but both runs scored only {names}",
                        file=policy.source, field="evaluator")


def comparison_input(paired: PairedRuns, evaluators: list[str] | None = None) -> ComparisonInput:
    """Arrays for ``compare_arrays`` from two paired runs (optionally only some evaluators)."""
    metrics = [MetricInput(evaluator=e.name, binary=e.binary, base=e.base, cand=e.cand,
                           base_status=e.base_status, cand_status=e.cand_status)
               for e in paired.evaluators if evaluators is None or e.name in evaluators]
    clusters = None
    if any(g for g in paired.groups):
        clusters = [g or f"row:{rid}" for g, rid in zip(paired.groups, paired.row_ids, strict=True)]
    return ComparisonInput(row_ids=list(paired.row_ids), cohorts=paired.cohorts, clusters=clusters,
                           metrics=metrics)


def _row_json(paired: PairedRuns) -> dict[str, dict[str, Any]]:
    """Row id -> row JSON with its effective split filled in (``where: {split: test}`` works)."""
    out = {}
    for rid, row in paired.rows_data.items():
        out[rid] = row if row.get("split") else {**row, "split": assign_split(rid, DEFAULT_SPLIT_RATIOS)}
    return out


def scoped_input(paired: PairedRuns, policy: GatePolicy) -> ComparisonInput:
    """The comparison input of two paired runs with one derived measure per scoped rule."""
    known = {t for row in paired.rows_data.values() for t in row.get("cohorts", [])}
    return scope_input(comparison_input(paired), policy, _row_json(paired), known_cohorts=known)


def compare_runs(store: Store, baseline: str, candidate: str, *, n_resamples: int = 2000, alpha: float = 0.05,
                 seed: int = 0, correction: str = "holm", min_cohort_rows: int = 20) -> tuple[PairedRuns, Comparison]:
    """Paired statistics of every evaluator the two runs share (no policy)."""
    paired = pair_runs(store, baseline, candidate)
    comp = compare_arrays(comparison_input(paired), n_resamples=n_resamples, alpha=alpha, seed=seed,
                          correction=correction, min_cohort_rows=min_cohort_rows)  # type: ignore[arg-type]
    return paired, comp


def _side(rec: RowRecord | None, names: list[str]) -> dict[str, Any]:
    if rec is None:
        return {"output": None, "tool_calls": [], "error": "row not in this run", "scores": {}}
    first = rec.outputs[0] if rec.outputs else None
    scores = {}
    for n in names:
        agg = aggregate_row(rec.scores.get(n, []))
        scores[n] = {"score": agg.score, "status": agg.status, "reason": agg.reason}
    return {"output": first.text if first else None,
            "tool_calls": [c.model_dump(exclude_none=True) for c in first.tool_calls] if first else [],
            "error": rec.error, "samples": len(rec.outputs), "scores": scores}


def row_diffs(paired: PairedRuns) -> list[dict[str, Any]]:
    """One record per row: input, both outputs, both scores and reasons, per-evaluator delta."""
    names = [e.name for e in paired.evaluators]
    out = []
    for i, rid in enumerate(paired.row_ids):
        data = paired.rows_data.get(rid, {})
        deltas: dict[str, float | None] = {}
        flips: dict[str, str] = {}
        for e in paired.evaluators:
            b, c = e.base[i], e.cand[i]
            deltas[e.name] = None if np.isnan(b) or np.isnan(c) else round(float(c - b), 6)
            if e.binary and deltas[e.name]:
                flips[e.name] = "fixed" if (deltas[e.name] or 0) > 0 else "broke"
        prompt = data.get("input")
        if prompt is None and data.get("messages"):
            prompt = next((m.get("content") for m in reversed(data["messages"]) if m.get("role") == "user"), None)
        out.append({"id": rid, "cohorts": paired.cohorts[i], "input": prompt, "expected": data.get("expected"),
                    "baseline": _side(paired.base_rows.get(rid), names),
                    "candidate": _side(paired.cand_rows.get(rid), names),
                    "delta": deltas, "flips": flips})
    return out


@dataclass
class GateResult:
    """A verdict with everything needed to explain it (reports are rendered from this)."""

    verdict: Verdict
    comparison: Comparison
    paired: PairedRuns
    policy: GatePolicy
    created_at: str
    #: The tuning-data contamination guard's findings (``GateContamination.to_dict()``), if run.
    contamination: dict[str, Any] | None = None
    #: The forgetting probe's comparison (``ForgettingResult.to_dict()``) when the policy has one.
    forgetting: dict[str, Any] | None = None

    @property
    def exit_code(self) -> int:
        return self.verdict.exit_code

    def to_dict(self) -> dict[str, Any]:
        """``verdict.json``: the decision, every rule, the statistics and what produced them."""
        p = self.paired

        def side(run: Any) -> dict[str, Any]:
            return {"run_id": run.id, "candidate_hash": run.candidate_hash,
                    "candidate_name": run.meta.get("candidate_name"), "rows": run.rows_done,
                    "model_calls": run.model_calls, "cache_hits": run.cache_hits}

        return {
            "decision": self.verdict.decision,
            "exit_code": self.verdict.exit_code,
            "reasons": self.verdict.reasons,
            "rules": [r.model_dump(mode="json") for r in self.verdict.rules],
            "policy": {"name": self.policy.name, "version": self.policy.version, "hash": self.policy.hash,
                       "source": self.policy.source, "alpha": self.policy.alpha,
                       "correction": self.policy.correction},
            "dataset_hash": p.baseline.dataset_hash,
            "baseline": side(p.baseline),
            "candidate": side(p.candidate),
            "rows": {"paired_union": len(p.row_ids), "only_in_baseline": p.only_in_baseline,
                     "only_in_candidate": p.only_in_candidate},
            "unpaired_evaluators": p.unpaired_evaluators,
            "comparison": self.comparison.to_dict(),
            "contamination": self.contamination,
            "forgetting": self.forgetting,
            "tunegate_version": __version__,
            "created_at": self.created_at,
        }


def gate_runs(store: Store, baseline: str, candidate: str, policy: GatePolicy, *, record: bool = True,
              allow_contaminated: bool = False, probe_runner: Runner | None = None) -> GateResult:
    """Gate ``candidate`` against ``baseline`` under ``policy``; stores the verdict when ``record``.

    Gated rows that overlap the candidate's tuning data (its lineage) are excluded from the
    comparison unless ``allow_contaminated``; both ways they are reported (engine.contamination_gate).
    With a ``forgetting`` policy section both candidates are also compared on the probe
    (engine.forgetting): run through ``probe_runner``, else only looked up among finished runs.
    """
    from tunegate.engine.gate.contamination import guard_contamination
    from tunegate.engine.gate.forgetting import gate_forgetting

    paired = pair_runs(store, baseline, candidate)
    paired, contamination = guard_contamination(store, paired, allow_contaminated=allow_contaminated)
    needed = list(dict.fromkeys(policy.gated_evaluators() + policy.cohort_evaluators()))
    _require(paired, needed, policy)
    # every shared evaluator is compared (the report shows them all); the gate applies its own
    # multiplicity correction over the rules it tests, so extra evaluators do not dilute it
    comp = compare_arrays(scoped_input(paired, policy), **policy.compare_options())
    forgetting = gate_forgetting(store, policy, baseline, candidate, probe_runner)
    verdict = contamination.annotate(decide(comp, policy, external=forgetting.external_rules() if forgetting else []))
    res = GateResult(verdict=verdict, comparison=comp, paired=paired, policy=policy,
                     created_at=datetime.now(UTC).isoformat(timespec="seconds"), contamination=contamination.to_dict(),
                     forgetting=forgetting.to_dict() if forgetting else None)
    if record:
        import json

        store.put_verdict(paired.baseline.id, paired.candidate.id, policy.hash, verdict.decision,
                          json.dumps(res.to_dict(), default=str))
    return res
