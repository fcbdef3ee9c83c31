"""A small stored gate (two scored runs) with every kind of row the report must show.

Cohorts billing/refunds/shipping (40 rows each) and tiny (5 rows, below min_rows 20); evaluators
exact_match (pass/fail) and token_f1 (continuous); rows that broke, fixed, errored (missing from
the candidate run); a JSON output; and one output that tries to break out of the page
(``</script><script>…``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tunegate.core import Dataset, Example
from tunegate.core.outputs import load_outputs
from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.runs import GateResult, gate_runs
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.evaluators.registry import load_suite
from tunegate.store.sqlite import Store

__all__ = ["POLICY", "XSS", "make_dataset", "make_gate"]

XSS = '</script><script>window.__pwned=1;alert(1)</script><img src=x onerror="window.__pwned=2">'

POLICY = GatePolicy.model_validate({
    "name": "report-test", "headline": {"evaluator": "exact_match", "rule": "improve"},
    "guards": [{"evaluator": "token_f1", "rule": "non_inferior", "margin": 0.02},
               {"evaluator": "exact_match", "rule": "floor", "min": 0.4}],
    "cohorts": {"rule": "non_inferior", "margin": 0.05, "min_rows": 20}, "error_budget": 0.05})


def make_dataset(per_cohort: int = 40) -> Dataset:
    rows = []
    for c, n in (("billing", per_cohort), ("refunds", per_cohort), ("shipping", per_cohort), ("tiny", 5)):
        for i in range(n):
            rows.append(Example(id=f"{c}-{i:04d}", input=f"{c} question {i}?", expected=f"answer {c} {i}",
                                cohorts=[c]))
    return Dataset.of(rows, name="report-test")


def _outputs(path: Path, ds: Dataset, correct: set[str], *, skip: set[str] = frozenset(),  # type: ignore[assignment]
             special: dict[str, str] | None = None) -> Path:
    with path.open("w") as fh:
        for ex in ds:
            if ex.id in skip:
                continue
            out = (special or {}).get(ex.id) or (ex.expected if ex.id in correct else f"sorry, no idea about {ex.id}")
            fh.write(json.dumps({"id": ex.id, "output": out}) + "\n")
    return path


def make_gate(tmp: Path, per_cohort: int = 40) -> tuple[GateResult, dict[str, Any]]:
    """Two runs and their gate; returns the result and facts the tests check against."""
    ds = make_dataset(per_cohort)
    ids = [ex.id for ex in ds]
    base_ok = {i for k, i in enumerate(ids) if k % 2 == 0}
    cand_ok = {i for k, i in enumerate(ids) if k % 3 != 1}
    if per_cohort >= 40:  # shipping regresses for the candidate
        cand_ok -= {i for i in ids if i.startswith("shipping") and int(i[-4:]) < 30}
    missing = {ids[3]}
    xss_id = ids[7]
    special_c = {xss_id: XSS, ids[9]: '{"answer": "refund", "amount": 12.5, "items": [1, 2]}'}
    with Store(tmp / "store.db") as store:
        b = run_plan(plan_run(ds, load_suite("exact_match,token_f1"),
                              outputs=load_outputs(_outputs(tmp / "b.jsonl", ds, base_ok))), store).run_id
        c = run_plan(plan_run(ds, load_suite("exact_match,token_f1"),
                              outputs=load_outputs(_outputs(tmp / "c.jsonl", ds, cand_ok, skip=missing,
                                                            special=special_c))), store).run_id
        res = gate_runs(store, b, c, POLICY)
    return res, {"baseline": b, "candidate": c, "xss_id": xss_id, "missing": missing, "db": tmp / "store.db"}
