"""Gating stored runs end to end: pairing, refusals, cohort regressions, error budget, reports."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from tests.fakes import FakeBackend
from tunegate.backends.base import GenerationRequest
from tunegate.cli.main import main
from tunegate.core import CandidateSpec, Dataset, Example, PromptTemplate
from tunegate.core.outputs import load_outputs
from tunegate.core.policy import GatePolicy
from tunegate.engine.gate.runs import gate_runs
from tunegate.engine.run.executor import run_plan
from tunegate.engine.run.plan import plan_run
from tunegate.errors import IdentityMismatch
from tunegate.evaluators.registry import load_suite
from tunegate.report.files import write_report
from tunegate.store.sqlite import Store


def make_dataset(n_per_cohort: int = 60, cohorts: tuple[str, ...] = ("billing", "refunds", "shipping")) -> Dataset:
    rows = []
    for c in cohorts:
        for i in range(n_per_cohort):
            rows.append(Example(id=f"{c}-{i:03d}", input=f"{c} question {i}", expected=f"answer {c} {i}",
                                cohorts=[c]))
    return Dataset.of(rows, name="gating")


def outputs_file(path: Path, ds: Dataset, correct: set[str], errored: set[str] = frozenset()) -> Path:  # type: ignore[assignment]
    with path.open("w") as fh:
        for ex in ds:
            if ex.id in errored:
                continue
            out = ex.expected if ex.id in correct else "I do not know"
            fh.write(json.dumps({"id": ex.id, "output": out}) + "\n")
    return path


def scored_run(store: Store, ds: Dataset, path: Path) -> str:
    plan = plan_run(ds, load_suite("exact_match"), outputs=load_outputs(path))
    return run_plan(plan, store).run_id


POLICY = GatePolicy.model_validate({
    "name": "t", "headline": {"evaluator": "exact_match", "rule": "improve"},
    "cohorts": {"rule": "non_inferior", "margin": 0.05, "min_rows": 20}, "error_budget": 0.02})


def ids(ds: Dataset, cohort: str, frac: float) -> set[str]:
    sel = [ex.id for ex in ds if cohort in ex.cohorts]
    return set(sel[: int(len(sel) * frac)])


def test_aggregate_improves_but_one_cohort_regresses_blocks(tmp_path: Path) -> None:
    ds = make_dataset()
    base = ids(ds, "billing", 0.5) | ids(ds, "refunds", 0.5) | ids(ds, "shipping", 0.9)
    cand = ids(ds, "billing", 1.0) | ids(ds, "refunds", 1.0) | ids(ds, "shipping", 0.45)
    with Store(tmp_path / "s.db") as store:
        b = scored_run(store, ds, outputs_file(tmp_path / "b.jsonl", ds, base))
        c = scored_run(store, ds, outputs_file(tmp_path / "c.jsonl", ds, cand))
        res = gate_runs(store, b, c, POLICY)
    overall = res.comparison.evaluator("exact_match").cell("*")  # type: ignore[union-attr]
    assert overall is not None and overall.delta is not None and overall.delta > 0
    assert res.verdict.decision == "BLOCK"
    failed = [r for r in res.verdict.rules if r.status == "fail"]
    assert [r.cohort for r in failed] == ["shipping"]
    assert any("shipping" in r for r in res.verdict.reasons)


def test_better_but_tiny_n_is_inconclusive_with_rows_needed(tmp_path: Path) -> None:
    ds = make_dataset(n_per_cohort=4, cohorts=("billing",))
    with Store(tmp_path / "s.db") as store:
        b = scored_run(store, ds, outputs_file(tmp_path / "b.jsonl", ds, ids(ds, "billing", 0.5)))
        c = scored_run(store, ds, outputs_file(tmp_path / "c.jsonl", ds, ids(ds, "billing", 0.75)))
        res = gate_runs(store, b, c, GatePolicy.model_validate(
            {"headline": {"evaluator": "exact_match", "rule": "improve"}, "min_rows": 1}))
    assert res.verdict.decision == "INCONCLUSIVE"
    head = next(r for r in res.verdict.rules if r.name == "headline")
    assert head.status == "undecided" and head.rows_needed is not None and head.rows_needed > 4


def test_different_dataset_hashes_are_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    ds1 = make_dataset(10, ("billing",))
    ds2 = Dataset.of([ex.model_copy(update={"expected": "changed"}) if ex.id.endswith("000") else ex for ex in ds1])
    with Store(tmp_path / "s.db") as store:
        b = scored_run(store, ds1, outputs_file(tmp_path / "b.jsonl", ds1, set()))
        c = scored_run(store, ds2, outputs_file(tmp_path / "c.jsonl", ds2, set()))
        with pytest.raises(IdentityMismatch, match="different datasets"):
            gate_runs(store, b, c, POLICY)
    pol = tmp_path / "p.yaml"
    pol.write_text("headline: {evaluator: exact_match, rule: improve}\n")
    code = main(["--db", str(tmp_path / "s.db"), "gate", "--baseline", b, "--candidate", c, "--policy", str(pol)])
    err = capsys.readouterr().err
    assert code == 2 and "different datasets" in err and "Traceback" not in err


def test_evaluator_identity_difference_is_refused(tmp_path: Path) -> None:
    ds = make_dataset(10, ("billing",))
    f = outputs_file(tmp_path / "b.jsonl", ds, set())
    with Store(tmp_path / "s.db") as store:
        b = run_plan(plan_run(ds, load_suite("token_f1"), outputs=load_outputs(f)), store).run_id
        from tunegate.evaluators.registry import default_registry

        ev = default_registry().create("token_f1", threshold=0.9)
        c = run_plan(plan_run(ds, [ev], outputs=load_outputs(f)), store).run_id
        with pytest.raises(IdentityMismatch, match=r"evaluator .token_f1. differs.*config"):
            gate_runs(store, b, c, GatePolicy.model_validate({"headline": {"evaluator": "token_f1", "rule": "improve"}}))


def test_errors_beyond_budget_block(tmp_path: Path) -> None:
    ds = make_dataset()
    everything = {ex.id for ex in ds}
    lost = set(sorted(everything)[:10])  # 10 of 180 rows have no candidate output = 5.6% > 2%
    with Store(tmp_path / "s.db") as store:
        b = scored_run(store, ds, outputs_file(tmp_path / "b.jsonl", ds, ids(ds, "billing", 0.5)))
        c = scored_run(store, ds, outputs_file(tmp_path / "c.jsonl", ds, everything, errored=lost))
        res = gate_runs(store, b, c, POLICY)
    assert res.verdict.decision == "BLOCK"
    budget = next(r for r in res.verdict.rules if r.rule == "error_budget")
    assert budget.status == "fail"
    assert any("error" in r.lower() and "budget" in r.lower() for r in res.verdict.reasons)


def test_reports_are_written_and_parse(tmp_path: Path) -> None:
    ds = make_dataset()
    with Store(tmp_path / "s.db") as store:
        b = scored_run(store, ds, outputs_file(tmp_path / "b.jsonl", ds, ids(ds, "billing", 0.3)))
        c = scored_run(store, ds, outputs_file(tmp_path / "c.jsonl", ds, {ex.id for ex in ds}))
        res = gate_runs(store, b, c, POLICY)
    paths = write_report(res, tmp_path / "report")
    md = paths["summary.md"].read_text()
    assert md.startswith("## ✅ tunegate: **PROMOTE**")
    assert "### Eval delta by evaluator" in md and "### Cohorts" in md and "Rows the candidate fixed" in md
    assert "Holm" in md
    suite = ET.parse(paths["junit.xml"]).getroot()
    # one case per rule plus the "gate decision" case
    assert int(suite.get("tests", "0")) == len(res.verdict.rules) + 1 and suite.get("failures") == "0"
    v = json.loads(paths["verdict.json"].read_text())
    assert v["decision"] == "PROMOTE" and v["policy"]["hash"].startswith("pol-")
    assert v["dataset_hash"] == ds.hash and v["candidate"]["candidate_hash"].startswith("out-")
    assert v["tunegate_version"]
    rows = [json.loads(line) for line in paths["rows.jsonl"].read_text().splitlines()]
    assert len(rows) == len(ds)
    flipped = [r for r in rows if r["flips"].get("exact_match") == "fixed"]
    assert len(flipped) == len(ds) - len(ids(ds, "billing", 0.3))
    assert flipped[0]["baseline"]["scores"]["exact_match"]["score"] == 0.0


def test_regate_with_another_policy_makes_zero_model_calls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import tunegate.api as api

    ds = make_dataset(30, ("billing", "refunds"))
    backends: list[FakeBackend] = []

    def script(req: GenerationRequest) -> str:
        text = req.messages[-1].content or ""
        c, _, i = text.partition(" question ")
        return f"answer {c} {i}" if (req.messages[0].content == "good" or int(i) % 2) else "no"

    def fake_backend(spec: CandidateSpec) -> FakeBackend:
        fb = FakeBackend(script)
        backends.append(fb)
        return fb

    monkeypatch.setattr(api, "make_backend", fake_backend)
    inc = CandidateSpec(name="inc", prompt=PromptTemplate(system="meh"))
    cand = CandidateSpec(name="cand", prompt=PromptTemplate(system="good"))
    db = tmp_path / "s.db"
    r1 = api.gate_detailed(baseline=inc, candidate=cand, policy=POLICY, dataset=ds, db=db)
    assert r1.verdict.decision == "PROMOTE"
    first_calls = sum(len(b.calls) for b in backends)
    assert first_calls == 2 * len(ds)
    lenient = GatePolicy.model_validate({"headline": {"evaluator": "exact_match", "rule": "non_inferior",
                                                      "margin": 0.1}})
    r2 = api.gate_detailed(baseline=inc, candidate=cand, policy=lenient, dataset=ds, db=db)
    assert sum(len(b.calls) for b in backends) == first_calls, "re-gating must not call the model"
    assert r2.paired.candidate.id == r1.paired.candidate.id
    assert r2.verdict.policy_hash != r1.verdict.policy_hash
