"""The forgetting probe: does a tuned candidate keep the incumbent's general capability?

A tuned candidate (LoRA adapter, prompt change) can win on the target task while losing what the
base model could do elsewhere. When the policy has a ``forgetting`` section, both candidates also
run on a small general-capability probe (built in: ``general-v1``, see docs/forgetting.md). Each
probe row gets one **probe score**, the mean of the evaluators that apply to it (each row of a
shipped probe is applicable to exactly the evaluators it declares, so this is that evaluator's
score), and the probe is compared with the same paired statistics as the main dataset. The rule
then enters the gate as an :class:`~tunegate.engine.gate.decide.ExternalRule`: judged like a
``non_inferior`` guard, inside the verdict's multiplicity correction.

Runs go through the caller's ``runner`` (the API passes one built on ``ensure_run``, so finished
probe runs of the same identity are reused and cost zero model calls). A side that cannot be run
on the probe (an outputs-file candidate, an adapter that changed since its run, a prompt needing
fields the probe rows lack) makes the rule *not evaluable*: undecided with that reason, never a
silent pass.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from tunegate.core.candidate import CandidateSpec
from tunegate.core.dataset import Dataset
from tunegate.core.loading import load_dataset
from tunegate.core.policy import ForgettingRule, GatePolicy
from tunegate.core.prompt import PromptTemplate
from tunegate.engine.gate.decide import ExternalRule
from tunegate.engine.gate.pairing import pair_runs
from tunegate.engine.run.aggregate import aggregate_row
from tunegate.engine.run.plan import plan_run
from tunegate.engine.run.suite import resolve_suite
from tunegate.engine.stats.compare import ComparisonInput, MetricInput, compare_arrays
from tunegate.engine.stats.results import OVERALL, Comparison
from tunegate.errors import UserError
from tunegate.store.sqlite import Store

__all__ = ["PROBE_METRIC", "RULE_NAME", "ForgettingResult", "Probe", "Runner", "combine_rows",
           "evaluate_forgetting", "gate_forgetting", "load_probe", "lookup_runner", "probe_spec",
           "specs_from_runs"]

#: Name of the combined per-row score in the probe comparison.
PROBE_METRIC = "probe_score"
#: Name of the rule result in the verdict.
RULE_NAME = "forgetting"

#: ``(probe dataset, probe-ready spec, evaluator suite) -> (finished run id, reused)``; None: no run.
Runner = Callable[[Dataset, CandidateSpec, "str | list[str] | None"], "tuple[str, bool] | None"]


@dataclass(frozen=True)
class Probe:
    """A resolved probe: its rows and the evaluator suite that scores them."""

    name: str
    rule: ForgettingRule
    dataset: Dataset
    suite: str | list[str] | None


def load_probe(policy: GatePolicy) -> Probe:
    """The policy's probe, loaded and validated (UserError naming the policy field otherwise)."""
    fg = policy.forgetting
    if fg is None:
        raise UserError("the policy has no forgetting section", file=policy.source, field="forgetting")
    try:
        data, suite = fg.probe_files(policy.base_dir)
    except ValueError as e:
        raise UserError(str(e), file=policy.source, field="forgetting.probe") from None
    ds = load_dataset(data, name=fg.probe_name)
    resolve_suite(suite, ds)  # a bad suite is a policy error, before anything runs
    return Probe(name=fg.probe_name, rule=fg, dataset=ds, suite=suite)


def probe_spec(spec: CandidateSpec, rule: ForgettingRule) -> CandidateSpec:
    """``spec`` as it runs on the probe: the policy's max_tokens and prompt mode applied."""
    update: dict[str, Any] = {}
    if rule.max_tokens is not None:
        update["params"] = spec.params.model_copy(update={"max_tokens": rule.max_tokens})
    if rule.prompt == "bare":
        update["prompt"] = PromptTemplate()
    return spec.model_copy(update=update) if update else spec


def specs_from_runs(store: Store, baseline_run: str, candidate_run: str
                    ) -> tuple[CandidateSpec | None, CandidateSpec | None, str]:
    """The candidate specs behind two stored runs, from the store's candidate records.

    Returns (baseline spec, candidate spec, why not) — a spec is None when it cannot be rebuilt
    exactly (scored from an outputs file, or its adapter files changed since the run).
    """
    specs: list[CandidateSpec | None] = []
    why: list[str] = []
    for side, run_id in (("baseline", baseline_run), ("candidate", candidate_run)):
        run = store.run(run_id)
        rec = store.candidate(run.candidate_hash)
        spec: CandidateSpec | None = None
        if rec is None:
            why.append(f"the {side} run {run_id} has no stored candidate record")
        elif rec["kind"] != "spec":
            why.append(f"the {side} run {run_id} was scored from an outputs file ({rec['name']}), "
                       "so it cannot be run on the probe")
        else:
            data = {k: v for k, v in rec["spec"].items() if k != "identity"}
            try:
                spec = CandidateSpec.model_validate(data)
                if spec.hash != run.candidate_hash:
                    why.append(f"the {side} candidate {rec['name']!r} no longer hashes as in run {run_id} "
                               "(its adapter or model files changed)")
                    spec = None
            except (UserError, ValueError) as e:
                why.append(f"the {side} candidate {rec['name']!r} cannot be rebuilt: {e}")
                spec = None
        specs.append(spec)
    return specs[0], specs[1], "; ".join(why)


def lookup_runner(store: Store) -> Runner:
    """A runner that only finds finished probe runs (no model calls): re-gating stays free."""
    def run(ds: Dataset, spec: CandidateSpec, suite: str | list[str] | None) -> tuple[str, bool] | None:
        rid = store.latest_finished(plan_run(ds, resolve_suite(suite, ds), candidate=spec).identity)
        return None if rid is None else (rid, True)
    return run


def combine_rows(values: list[np.ndarray], statuses: list[list[str]]) -> tuple[np.ndarray, list[str]]:
    """Per-row probe score of one side from its evaluators' (value, status) columns.

    The mean over evaluators with status ok; ``error`` when any evaluator errored on the row (a
    failure must not be averaged away); otherwise ``missing``/``skipped`` when none scored it.
    """
    n = len(statuses[0]) if statuses else 0
    out = np.full(n, np.nan)
    st: list[str] = []
    for i in range(n):
        row = [s[i] for s in statuses]
        ok = [float(v[i]) for v, s in zip(values, row, strict=True) if s == "ok"]
        if "error" in row:
            st.append("error")
        elif ok:
            out[i] = sum(ok) / len(ok)
            st.append("ok")
        else:
            st.append("missing" if "missing" in row else "skipped")
    return out, st


@dataclass
class ForgettingResult:
    """The probe comparison (or why there is none) and the rule it feeds."""

    probe: str
    rule: ForgettingRule
    dataset_hash: str
    evaluable: bool
    reason: str = ""
    baseline_run: str | None = None
    candidate_run: str | None = None
    specs: dict[str, str | None] = field(default_factory=dict)
    reused: dict[str, bool] = field(default_factory=dict)
    comparison: Comparison | None = None

    def external_rule(self) -> ExternalRule:
        """The overall rule as the gate tests it (undecided with the reason when not evaluable)."""
        return self.external_rules()[0]

    def external_rules(self) -> list[ExternalRule]:
        """The overall rule, then (with ``cohorts:``) one rule per probe cohort, as the gate tests them."""
        ev = self.comparison.evaluator(PROBE_METRIC) if self.comparison is not None else None
        cell = ev.cell(OVERALL) if ev is not None else None
        note = "" if cell is not None else f"not evaluable: {self.reason or 'no probe comparison'}"
        rules = [ExternalRule(name=RULE_NAME, rule=self.rule.as_rule(), cell=cell, note=note)]
        per = self.rule.cohorts
        if per is not None and ev is not None:
            rule = per.as_rule(self.rule.as_rule().evaluator)
            rules += [ExternalRule(name=f"{RULE_NAME} {c.cohort}", rule=rule, cell=c, min_rows=per.min_rows)
                      for c in ev.cells if c.cohort != OVERALL]
        return rules

    def to_dict(self) -> dict[str, Any]:
        """``verdict.json["forgetting"]``: settings, runs, per-cohort and per-evaluator deltas."""
        out: dict[str, Any] = {
            "probe": self.probe, "settings": self.rule.model_dump(mode="json"), "dataset_hash": self.dataset_hash,
            "evaluable": self.evaluable, "reason": self.reason or None, "baseline_run": self.baseline_run,
            "candidate_run": self.candidate_run, "candidate_hashes": self.specs, "reused_runs": self.reused,
            "cohorts": [], "evaluators": []}
        comp = self.comparison
        if comp is None:
            return out
        score = comp.evaluator(PROBE_METRIC)
        if score is not None:
            out["cohorts"] = [c.to_dict() for c in score.cells]
            out["errored"] = {"baseline": score.base.errored, "candidate": score.cand.errored}
        out["evaluators"] = [c.to_dict() for e in comp.evaluators if e.evaluator != PROBE_METRIC
                             for c in e.cells if c.cohort == OVERALL]
        out["method"] = comp.method
        return out


def _probe_comparison(store: Store, policy: GatePolicy, base_id: str, cand_id: str) -> Comparison:
    """Per-evaluator and combined probe-score statistics of two probe runs (same run: identical)."""
    if base_id != cand_id:
        paired = pair_runs(store, base_id, cand_id)
        ids, cohorts, groups = paired.row_ids, paired.cohorts, paired.groups
        cols = [(e.name, e.base, e.cand, e.base_status, e.cand_status) for e in paired.evaluators]
    else:  # identical probe identity on both sides: one run, zero deltas (still floored by the CI rule)
        run = store.run(base_id)
        rows = {r.row_id: r for r in store.rows(base_id)}
        data = store.dataset_rows(run.dataset_hash)
        ids = [rid for rid in data if rid in rows]
        cohorts = [list(data[r].get("cohorts", [])) for r in ids]
        groups = [data[r].get("group") for r in ids]
        cols = []
        for ev in run.evaluators:
            aggs = [aggregate_row(rows[r].scores.get(ev["name"], [])) for r in ids]
            vals = np.array([np.nan if a.score is None else a.score for a in aggs], dtype=float)
            sts: list[str] = [a.status for a in aggs]
            cols.append((str(ev["name"]), vals, vals, sts, sts))
    base, bst = combine_rows([c[1] for c in cols], [list(c[3]) for c in cols])
    cand, cst = combine_rows([c[2] for c in cols], [list(c[4]) for c in cols])
    metrics = [MetricInput(PROBE_METRIC, binary=False, base=base, cand=cand, base_status=bst, cand_status=cst)]
    metrics += [MetricInput(name, binary=False, base=b, cand=c, base_status=bs, cand_status=cs)
                for name, b, c, bs, cs in cols]
    clusters = [g or f"row:{r}" for g, r in zip(groups, ids, strict=True)] if any(groups) else None
    return compare_arrays(ComparisonInput(row_ids=list(ids), cohorts=cohorts, clusters=clusters, metrics=metrics),
                          **policy.compare_options())


def evaluate_forgetting(store: Store, policy: GatePolicy, baseline: CandidateSpec | None,
                        candidate: CandidateSpec | None, runner: Runner, *, why_not: str = "") -> ForgettingResult:
    """Run (through ``runner``) and compare both specs on the policy's probe.

    ``None`` for a spec means it cannot run (``why_not`` says why); the result is then not
    evaluable. Runner failures that are user errors (e.g. a template variable the probe rows lack)
    also make it not evaluable, with the message.
    """
    probe = load_probe(policy)
    res = ForgettingResult(probe=probe.name, rule=probe.rule, dataset_hash=probe.dataset.hash, evaluable=False)
    if baseline is None or candidate is None:
        res.reason = why_not or "a candidate spec is not available"
        return res
    b_spec, c_spec = probe_spec(baseline, probe.rule), probe_spec(candidate, probe.rule)
    res.specs = {"baseline": b_spec.hash, "candidate": c_spec.hash}
    run_ids: list[str] = []
    for side, spec in (("baseline", b_spec), ("candidate", c_spec)):
        try:
            got = runner(probe.dataset, spec, probe.suite)
        except UserError as e:
            res.reason = f"the {side} candidate cannot run on probe {probe.name}: {e}"
            return res
        if got is None:
            res.reason = (f"no finished run of the {side} candidate on probe {probe.name}; gate with the "
                          "candidates (tunegate gate / api.gate_detailed) so the probe runs")
            return res
        run_ids.append(got[0])
        res.reused[side] = got[1]
    res.baseline_run, res.candidate_run = run_ids
    res.comparison = _probe_comparison(store, policy, run_ids[0], run_ids[1])
    res.evaluable = True
    return res


def gate_forgetting(store: Store, policy: GatePolicy, baseline_run: str, candidate_run: str,
                    runner: Runner | None = None) -> ForgettingResult | None:
    """The forgetting check for two gated runs (None when the policy has no forgetting section).

    The specs come from the store's candidate records of the two runs; without a ``runner`` only
    finished probe runs are looked up (re-gating stays free of model calls).
    """
    if policy.forgetting is None:
        return None
    base, cand, why = specs_from_runs(store, baseline_run, candidate_run)
    return evaluate_forgetting(store, policy, base, cand, runner or lookup_runner(store), why_not=why)
